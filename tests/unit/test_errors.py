"""pyray/_private/errors.py: the one encoding of errors between processes."""
import pickle
import threading

import pytest

from pyray import exceptions as exc
from pyray._private import errors


class CustomError(Exception):
    def __init__(self, code):
        super().__init__(f"code {code}")
        self.code = code


def test_an_error_round_trips_with_its_type_and_fields():
    got = errors.decode(errors.encode(CustomError(7)))
    assert type(got) is CustomError and got.code == 7


def test_a_pyray_error_keeps_its_type():
    got = errors.decode(errors.encode(exc.NodeDiedError("node x died")))
    assert isinstance(got, exc.NodeDiedError) and "node x died" in str(got)


def test_an_exception_plain_pickle_refuses_still_reports():
    class Local(Exception):          # not importable: cloudpickle takes it
        pass
    got = errors.decode(errors.encode(Local("inside")))
    assert type(got).__name__ == "Local" and "inside" in str(got)


def test_an_exception_nothing_can_pickle_becomes_a_system_error_naming_it():
    class Holds(Exception):
        def __init__(self):
            super().__init__("holds a lock")
            self.lock = threading.Lock()
    got = errors.decode(errors.encode(Holds()))
    assert isinstance(got, exc.RaySystemError) and "holds a lock" in str(got)


def test_a_payload_this_process_cannot_rebuild_is_a_system_error():
    data = pickle.dumps(CustomError(1), protocol=5).replace(b"CustomError", b"MissingErro")
    got = errors.decode((data, []))
    assert isinstance(got, exc.RaySystemError)
    assert "could not be read here" in str(got)


def test_a_failed_request_answers_with_bad_input_as_itself_else_a_system_error():
    assert type(errors.decode(errors.request_failed(ValueError("taken")))) is ValueError
    assert type(errors.decode(errors.request_failed(KeyError("k")))) is KeyError
    assert isinstance(errors.decode(errors.request_failed(exc.ObjectLostError("ab", ""))),
                      exc.ObjectLostError)
    got = errors.decode(errors.request_failed(ZeroDivisionError("division by zero")))
    assert isinstance(got, exc.RaySystemError)
    assert "ZeroDivisionError: division by zero" in str(got)


def test_an_actor_death_cause_names_the_actor():
    got = errors.decode(errors.actor_died(b"\x01" * 16, "its node died"))
    assert isinstance(got, exc.ActorDiedError)
    assert got.actor_id == b"\x01" * 16
    assert str(got) == f"The actor {'01' * 16} is dead: its node died"


@pytest.mark.parametrize("err", [exc.ObjectStoreFullError("no room"),
                                 exc.ObjectLostError("ab", "owner"),
                                 exc.OwnerDiedError("ab", "owner")])
def test_object_errors_round_trip(err):
    got = errors.decode(errors.encode(err))
    assert type(got) is type(err) and str(got) == str(err)
