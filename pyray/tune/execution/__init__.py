"""The experiment loop and the processes that run trials."""
