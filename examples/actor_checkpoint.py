"""Checkpoint and restore: an actor whose state survives its process dying.

The actor writes its state to a file after every change and reads it back in
its constructor. With max_restarts, pyray re-creates a dead actor by running
its constructor again, so the restarted actor picks up where the old one
stopped. With max_task_retries, a call that was running when the process
died is sent again; each deposit carries a sequence number so that a call
retried after it was already applied is not applied twice.

    python examples/actor_checkpoint.py
"""
import json
import os
import signal
import tempfile

import pyray


@pyray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class Account:
    def __init__(self, path):
        self.path = path
        self.balance = 0
        self.last_seq = 0       # the highest deposit already applied
        if os.path.exists(path):
            with open(path) as f:
                state = json.load(f)
            self.balance, self.last_seq = state["balance"], state["last_seq"]

    def deposit(self, seq, amount):
        if seq > self.last_seq:            # a retry of an applied deposit is a no-op
            self.balance += amount
            self.last_seq = seq
            self._checkpoint()
        return self.balance

    def _checkpoint(self):
        # write-then-rename: a crash mid-write leaves the old checkpoint whole
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"balance": self.balance, "last_seq": self.last_seq}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def info(self):
        ctx = pyray.get_runtime_context()
        return {"balance": self.balance, "pid": os.getpid(),
                "restarted": ctx.was_current_actor_reconstructed()}


def main():
    pyray.init(num_cpus=1)
    with tempfile.TemporaryDirectory() as d:
        account = Account.remote(os.path.join(d, "account.json"))
        seq = 0
        for amount in (10, 20, 30):
            seq += 1
            pyray.get(account.deposit.remote(seq, amount))
        before = pyray.get(account.info.remote())
        print(f"before the crash: balance={before['balance']} "
              f"restarted={before['restarted']}")

        os.kill(before["pid"], signal.SIGKILL)      # the actor's process dies

        # The next calls wait for the restart (or, if one was sent to the
        # dead process, are retried on the new one): none is lost.
        for amount in (40, 50):
            seq += 1
            pyray.get(account.deposit.remote(seq, amount))
        after = pyray.get(account.info.remote())
        print(f"after the restart: balance={after['balance']} "
              f"restarted={after['restarted']} "
              f"new_process={after['pid'] != before['pid']}")
    pyray.shutdown()


if __name__ == "__main__":
    main()
