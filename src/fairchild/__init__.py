"""Fairchild: a Trio-native, PostgreSQL-backed job queue and dynamic workflow engine."""

from ._version import __version__
from .client import Fairchild
from .db import transaction
from .errors import (
    FairchildError,
    FutureNotReady,
    InvalidArguments,
    InvalidJobState,
    JobNotFound,
    NotConnected,
    NotSerializable,
    TaskNotFound,
)
from .future import Future
from .job import Job, JobState
from .record import Record
from .task import Task, get_task, registered_tasks, task
from .worker import ExponentialBackoff, RetentionPolicy, WorkerPool

__all__ = [
    "__version__",
    "ExponentialBackoff",
    "Fairchild",
    "FairchildError",
    "Future",
    "FutureNotReady",
    "InvalidArguments",
    "InvalidJobState",
    "Job",
    "JobNotFound",
    "JobState",
    "NotConnected",
    "NotSerializable",
    "Record",
    "RetentionPolicy",
    "Task",
    "TaskNotFound",
    "WorkerPool",
    "get_task",
    "registered_tasks",
    "task",
    "transaction",
]
