"""Ray's `ray._common` names that tests import (test_utils)."""
