"""Unit tests (no database): validation, registration, Record, Future, codec, direct calls."""

from __future__ import annotations

import json
import math
import uuid
from datetime import datetime, timedelta, timezone

import pytest

import core_tasks
from fairchild import (
    Future,
    FutureNotReady,
    InvalidArguments,
    Job,
    JobState,
    NotConnected,
    NotSerializable,
    Record,
    TaskNotFound,
    get_task,
    registered_tasks,
    task,
)
from fairchild import codec
from fairchild.context import ExecutionContext, executing


@task()
def takes_values(values: list, label: str = "x"):
    return Record(values)


@task()
def takes_kwargs(a: int, **extra):
    return Record({"a": a, **extra})


@task()
async def async_double(x: int):
    return Record(x * 2)


def make_job(**overrides) -> Job:
    now = datetime.now(timezone.utc)
    job_id = uuid.uuid4()
    fields = dict(
        id=job_id, task="t", queue="default", args={}, state=JobState.RUNNING, priority=5,
        attempt=1, max_attempts=3, scheduled_at=now, inserted_at=now, workflow_id=job_id,
    )
    fields.update(overrides)
    return Job(**fields)


# -- argument validation ---------------------------------------------------------------


async def test_missing_argument_is_refused_before_any_database_access():
    # No client is connected: validation must fail first (InvalidArguments, not NotConnected).
    with pytest.raises(InvalidArguments, match="'b'"):
        await core_tasks.add.enqueue(a=1)


async def test_unknown_argument_is_refused():
    with pytest.raises(InvalidArguments, match="'c'"):
        await core_tasks.add.enqueue(a=1, b=2, c=3)


async def test_valid_arguments_without_client_raise_not_connected():
    with pytest.raises(NotConnected):
        await core_tasks.add.enqueue(a=1, b=2)


@pytest.mark.parametrize(
    "value, type_name",
    [
        (datetime(2024, 1, 1, tzinfo=timezone.utc), "datetime"),
        ({1, 2}, "set"),
        (object(), "object"),
        (float("nan"), "float"),
        (float("inf"), "float"),
        (b"bytes", "bytes"),
        (uuid.UUID(int=1), "UUID"),
    ],
)
async def test_unserialisable_argument_names_argument_and_type(value, type_name):
    with pytest.raises(NotSerializable) as info:
        await takes_values.enqueue(values=value)
    message = str(info.value)
    assert "'values'" in message
    assert type_name in message
    assert takes_values.name in message


@pytest.mark.parametrize(
    "values, path",
    [
        ([1, 2, {3}], "'values'[2]"),
        ([1, [2, [3, float("nan")]]], "'values'[1][1][1]"),
        ({"k": [object()]}, "'values'['k'][0]"),
        ([{"a": {"b": datetime.now(timezone.utc)}}], "'values'[0]['a']['b']"),
    ],
)
async def test_unserialisable_nested_value_message_names_the_path(values, path):
    with pytest.raises(NotSerializable) as info:
        await takes_values.enqueue(values=values)
    assert path in str(info.value)
    assert info.value.path.endswith(path) or path in info.value.path


async def test_non_string_dict_key_is_refused():
    with pytest.raises(NotSerializable, match="key 1"):
        await takes_values.enqueue(values={1: "one"})


@pytest.mark.parametrize("priority", [-1, 10, 100, "1", 1.5, True, None.__class__])
async def test_priority_outside_0_to_9_or_not_int_is_refused(priority):
    with pytest.raises(InvalidArguments, match="priority"):
        await core_tasks.add.enqueue(a=1, b=2, _priority=priority)


def test_task_priority_is_validated_at_decoration():
    with pytest.raises(InvalidArguments, match="priority"):
        task(priority=12)(lambda: None)
    with pytest.raises(InvalidArguments, match="max_attempts"):
        task(max_attempts=0)(lambda: None)
    with pytest.raises(InvalidArguments, match="timeout"):
        task(timeout=-1)(lambda: None)
    with pytest.raises(InvalidArguments, match="queue"):
        task(queue="")(lambda: None)


async def test_naive_scheduled_at_is_refused():
    naive = datetime(2030, 1, 1, 10, 0)
    with pytest.raises(InvalidArguments, match="timezone"):
        await core_tasks.add.enqueue(a=1, b=2, _scheduled_at=naive)
    with pytest.raises(InvalidArguments, match="timezone"):
        await core_tasks.add.enqueue_at(naive, a=1, b=2)
    with pytest.raises(InvalidArguments, match="datetime"):
        await core_tasks.add.enqueue(a=1, b=2, _scheduled_at="2030-01-01T00:00:00Z")


async def test_negative_delay_is_refused():
    with pytest.raises(InvalidArguments, match="delay"):
        await core_tasks.add.enqueue_in(seconds=-5, a=1, b=2)


async def test_bad_queue_option_is_refused():
    with pytest.raises(InvalidArguments, match="queue"):
        await core_tasks.add.enqueue(a=1, b=2, _queue="")
    with pytest.raises(InvalidArguments, match="queue"):
        await core_tasks.add.enqueue(a=1, b=2, _queue=7)


async def test_enqueue_many_names_the_bad_item():
    with pytest.raises(InvalidArguments, match=r"item 2: .*'b'"):
        await core_tasks.add.enqueue_many([{"a": 1, "b": 2}, {"a": 2, "b": 3}, {"a": 3}])
    with pytest.raises(NotSerializable, match=r"item 1: .*'a'"):
        await core_tasks.add.enqueue_many([{"a": 1, "b": 2}, {"a": {1}, "b": 3}])


def test_var_positional_task_is_refused():
    def variadic(*args):
        return None

    with pytest.raises(InvalidArguments, match=r"\*args"):
        task(variadic)


def test_var_keyword_arguments_are_flattened():
    new = takes_kwargs.prepare({"a": 1, "color": "red"})
    assert json.loads(new.args_json) == {"a": 1, "color": "red"}


# -- registration ------------------------------------------------------------------------


def test_task_is_registered_by_dotted_module_name():
    assert core_tasks.add.name == "core_tasks.add"
    assert get_task("core_tasks.add") is core_tasks.add
    assert takes_values.name == f"{__name__}.takes_values"
    assert registered_tasks()[takes_values.name] is takes_values


def test_task_defaults_and_options():
    t = core_tasks.async_add
    assert (t.queue, t.priority, t.max_attempts, t.tags, t.is_async) == (
        "core_other", 3, 4, ["core", "math"], True)
    d = core_tasks.add
    assert (d.queue, d.priority, d.max_attempts, d.tags, d.timeout, d.is_async) == (
        "default", 5, 3, [], None, False)


def test_explicit_name_and_bare_decorator():
    @task(name="core.custom_name")
    def whatever():
        return None

    @task
    def bare():
        return Record(1)

    assert get_task("core.custom_name") is whatever
    assert bare.name.endswith(".test_explicit_name_and_bare_decorator.<locals>.bare")
    assert bare() == Record(1)


def test_unknown_task_name():
    with pytest.raises(TaskNotFound, match="no_such.task") as info:
        get_task("no_such.task")
    assert "--import" in str(info.value)


# -- Record ------------------------------------------------------------------------------


def test_record_holds_a_value_and_compares_by_value():
    r = Record({"a": [1, 2]})
    assert r.value == {"a": [1, 2]}
    assert r == Record({"a": [1, 2]})
    assert r != Record({"a": [1]})
    with pytest.raises(AttributeError):
        r.value = 3  # frozen


# -- Future ------------------------------------------------------------------------------


async def test_future_cannot_be_awaited_read_or_truth_tested():
    job_id = uuid.uuid4()
    f = Future(job_id, "core_tasks.add")
    with pytest.raises(FutureNotReady, match=str(job_id)):
        await f
    with pytest.raises(FutureNotReady, match="does not exist yet"):
        f.value
    with pytest.raises(FutureNotReady):
        bool(f)
    with pytest.raises(FutureNotReady):
        if f:  # noqa: SIM102 - the point is the implicit bool
            pass


# -- calling a task ----------------------------------------------------------------------


def test_calling_a_sync_task_outside_a_worker_runs_it():
    assert core_tasks.add(a=2, b=3) == Record(5)
    assert core_tasks.add(2, 3) == Record(5)


async def test_calling_an_async_task_outside_a_worker_runs_it():
    assert await async_double(x=4) == Record(8)


def test_calling_a_task_inside_a_job_spawns_a_child_and_returns_a_future():
    parent = make_job()
    ctx = ExecutionContext(parent)
    with executing(ctx):
        f1 = core_tasks.add(a=1, b=2)
        f2 = takes_values(values=[f1, {"nested": f1}], _priority=1, _queue="other")
        with pytest.raises(InvalidArguments, match="'b'"):
            core_tasks.add(a=1)
    assert isinstance(f1, Future) and isinstance(f2, Future)
    assert [c.id for c in ctx.children] == [f1.job_id, f2.job_id]
    first, second = ctx.children
    assert first.parent_id == parent.id and first.workflow_id == parent.workflow_id
    assert second.upstreams == [f1.job_id]
    assert (second.priority, second.queue) == (1, "other")
    # Deterministic ids: the same attempt spawns the same ids; another attempt new ones.
    again = ExecutionContext(parent)
    with executing(again):
        core_tasks.add(a=1, b=2)
    assert again.children[0].id == f1.job_id
    retried = ExecutionContext(make_job(id=parent.id, workflow_id=parent.workflow_id, attempt=2))
    with executing(retried):
        core_tasks.add(a=1, b=2)
    assert retried.children[0].id != f1.job_id


# -- codec -------------------------------------------------------------------------------


def test_codec_round_trip_with_nested_futures_and_job_handles():
    up1, up2 = uuid.uuid4(), uuid.uuid4()
    job = make_job(id=up2, workflow_id=up2)
    args = {
        "plain": {"s": "x", "i": 1, "f": 1.5, "b": True, "n": None, "l": [1, [2]]},
        "futures": [Future(up1, "a"), {"deep": [Future(up1, "a"), job]}],
        "tuple": (1, 2),
    }
    text, upstreams = codec.encode_args(args)
    assert upstreams == [up1, up2]  # first-use order, no duplicates
    stored = json.loads(text)
    assert stored["futures"][0] == {codec.FUTURE_KEY: str(up1)}
    assert stored["futures"][1]["deep"][1] == {codec.FUTURE_KEY: str(up2)}
    assert stored["tuple"] == [1, 2]
    assert codec.upstream_ids(stored) == [up1, up2]
    resolved = codec.resolve(stored, {up1: {"v": 1}, up2: [7]})
    assert resolved == {
        "plain": args["plain"],
        "futures": [{"v": 1}, {"deep": [{"v": 1}, [7]]}],
        "tuple": [1, 2],
    }


def test_codec_resolve_leaves_plain_values_alone():
    stored = {"a": [1, {"b": "c"}], "d": {"$other": "x"}}
    assert codec.resolve(stored, {}) == stored
    assert codec.upstream_ids(stored) == []


def test_encode_result_refuses_futures_nan_and_oversize():
    with pytest.raises(NotSerializable):
        codec.encode_result(Future(uuid.uuid4(), "t"), 1000)
    with pytest.raises(NotSerializable):
        codec.encode_result([math.nan], 1000)
    with pytest.raises(NotSerializable, match="limit 10"):
        codec.encode_result("x" * 100, 10)
    assert json.loads(codec.encode_result({"a": [1, 2.5, None]}, 1000)) == {"a": [1, 2.5, None]}


def test_job_state_finality():
    assert {s for s in JobState if s.is_final} == {JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED}


def test_scheduled_at_must_be_aware_in_prepare():
    aware = datetime.now(timezone(timedelta(hours=2)))
    new = core_tasks.add.prepare({"a": 1, "b": 2}, scheduled_at=aware)
    assert new.scheduled_at == aware


async def test_nul_characters_in_arguments_are_refused():
    # PostgreSQL's jsonb cannot store \u0000: refuse it up front, naming the path.
    with pytest.raises(NotSerializable, match=r"'values'\[1\].*NUL"):
        await takes_values.enqueue(values=["ok", "a\x00b"])
    with pytest.raises(NotSerializable, match="NUL"):
        await takes_values.enqueue(values={"k\x00": 1})


async def test_a_user_dict_shaped_like_a_future_marker_is_refused():
    fake = {codec.FUTURE_KEY: str(uuid.uuid4())}
    with pytest.raises(InvalidArguments, match=r"'values'\[0\].*reserved"):
        await takes_values.enqueue(values=[fake])
    # With another key beside it, it is plain data.
    text, upstreams = codec.encode_args({"values": {codec.FUTURE_KEY: "x", "other": 1}})
    assert upstreams == []


def test_workflows_run_directly_outside_a_worker():
    # A Record returned by a task called directly stands where a Future would be: the
    # next task receives its value, as a worker would resolve the Future.
    import wf_tasks

    assert wf_tasks.orchestrator(items=[1, 2, 3]) == Record({"spawned": 4})
    assert wf_tasks.portfolio_value(symbols=["AAPL", "GOOG"]) == Record({"total": 330.5})
    summary = wf_tasks.run_all_batches().value
    assert summary["total"] == sum(summary["values"]) and summary["batches"] == 10
    assert wf_tasks.collect(values=[Record(1), {"k": Record([2])}, (Record(3),)]) == Record(
        [1, {"k": [2]}, (3,)])
    # Spawn options mean nothing when running directly; they are not passed to the function.
    assert core_tasks.add(a=1, b=2, _queue="elsewhere", _priority=0) == Record(3)
