"""Workers: `WorkerPool` claims and runs jobs."""

from .executor import ExponentialBackoff
from .maintenance import RetentionPolicy
from .pool import WorkerPool

__all__ = ["ExponentialBackoff", "RetentionPolicy", "WorkerPool"]
