"""The SDK speaks the hub's own wire definition: its limits are the protocol's and it
decodes what the hub encodes with the same structs."""

from __future__ import annotations

import msgspec
import pytest

from workyard import Task, protocol
from workyard.client import Job, _poller, _producer, _worker
from workyard.protocol import ErrorFrame, PolledTask, TaskFrame, decode_hub_frame, encode


@pytest.mark.parametrize("module", [_worker, _poller, _producer])
def test_the_sdk_defines_no_limit_of_its_own(module: object) -> None:
    limits = {name: value for name, value in vars(module).items() if name.startswith("MAX_")}
    assert limits, "the module uses no protocol limit at all"
    assert all(value is getattr(protocol, name) for name, value in limits.items())


def _task() -> Task:
    return Task(id="t1", name="tag", attrs={"cloud": "aws"}, data=msgspec.Raw(b'{"n": 1}'),
                timeout=5.0)


def test_a_worker_decodes_the_hubs_task_frames_single_or_in_arrays() -> None:
    frame = encode(TaskFrame.of(_task()))
    array = encode([TaskFrame.of(_task())] * 2)
    [job] = [Job.from_frame(t) for t in decode_hub_frame(frame)]  # type: ignore[union-attr]
    assert (job.id, job.name, job.attrs, job.data, job.timeout) == (
        "t1", "tag", {"cloud": "aws"}, {"n": 1}, 5.0)
    assert len(decode_hub_frame(array)) == 2  # type: ignore[arg-type]


def test_a_worker_tells_an_error_frame_from_a_malformed_one() -> None:
    assert decode_hub_frame(protocol.error_frame("malformed frame")) == ErrorFrame(
        "malformed frame")
    with pytest.raises(ValueError, match="task_id"):
        decode_hub_frame(b'{"task_name": "tag"}')


def test_a_poller_decodes_the_hubs_polled_tasks() -> None:
    body = encode({"tasks": [PolledTask.of(_task())]})
    [polled] = msgspec.json.decode(body, type=protocol.PolledBatch).tasks
    job = Job.from_polled(polled)
    assert (job.id, job.name, job.attrs, job.data, job.timeout) == (
        "t1", "tag", {"cloud": "aws"}, {"n": 1}, 5.0)
