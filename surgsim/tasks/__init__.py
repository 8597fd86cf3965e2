"""Task logic (no PyBullet calls of its own): specs, reward terms, success and failure rules."""

from surgsim.tasks.base import Measurement, Task
from surgsim.tasks.spec import SpecError, TaskSpec, load_spec

__all__ = ["Measurement", "SpecError", "Task", "TaskSpec", "load_spec", "make_task", "task_class"]


def make_task(spec: TaskSpec) -> Task:
    """The task a spec describes."""
    return task_class(spec.task)(spec)


def task_class(task: str) -> type[Task]:
    """The Task class for a spec's ``task`` field (the one registry of task classes)."""
    from surgsim.tasks.incision import IncisionTask
    from surgsim.tasks.needle_reach import NeedleReachTask
    from surgsim.tasks.surgical_path import SurgicalPathTask

    classes = {
        "needle_reach": NeedleReachTask,
        "surgical_path": SurgicalPathTask,
        "incision": IncisionTask,
    }
    return classes[task]
