"""Task registry. Importing this package registers every task.

    >>> from lengen.tasks import get_task
    >>> import random
    >>> get_task("reverse_add").sample(random.Random(0), 4)      # doctest: +SKIP
    Example(prompt='4321+789=', target='12220')

Modules: ``arithmetic`` (least-significant digit first), ``strings``, ``mazes`` (Wilson spanning trees),
``bits`` (parity and binary majority, the formal framework's twins).
"""

from lengen.tasks import arithmetic, bits, mazes, strings  # noqa: F401  (registers the tasks)
from lengen.tasks.base import TASKS, Example, Task, get_task, markers, register, split

__all__ = ["TASKS", "Example", "Task", "get_task", "markers", "register", "split"]
