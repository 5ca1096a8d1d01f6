"""Maze tasks on an 8x8 grid (family "mazes"; length = nodes in the maze, 2..64).

Grid and nodes: cell ``(r, c)`` (0-based row and column) is node ``8*r + c + 1``, i.e. 1..64 row-major,
written as the single token ``[k]``.

Maze with n nodes (``wilson_tree``): Wilson's algorithm for a uniform spanning tree of the 8x8 grid
graph, stopped once the tree holds n cells.

1. The tree starts as one uniformly random cell.
2. While the tree has fewer than n cells: pick a uniformly random cell ``u`` not in the tree and run a
   random walk from it (each step to a uniformly random grid neighbour) until it hits the tree. The
   loop-erased walk ``u = v0, v1, ..., vk`` (``vk`` in the tree) is obtained with Wilson's "next pointer"
   trick: remember, for every cell, the neighbour the walk *last* left it by, and follow those pointers
   from ``u``.
3. The path's cells are added in **reverse walk order**, ``v(k-1), ..., v0``, each joined by the edge to
   its successor; adding stops as soon as the tree has n cells. Adding from the end that touches the
   tree keeps a partially added path connected, so every intermediate result is a tree.

Run to n = 64 this is exactly Wilson's algorithm, so the full maze is a uniform spanning tree of the
grid. Smaller mazes are the trees Wilson's algorithm holds when it is stopped early (the reference's
"stopping the algorithm once it holds n nodes"); they are not uniform over n-node subtrees.

Prompt: the adjacency list node by node in ascending id, ``[a]:[b][c];`` with neighbours ascending,
then ``?``, the start node, the end node, ``=``. Start and end are two distinct tree nodes drawn
uniformly (an ordered pair). Example (path 1-2-10): ``[1]:[2];[2]:[1][10];[10]:[2];?[1][10]=``.

* ``dfs_trace``: depth-first search from the start, neighbours tried in ascending id, every node
  emitted on entry and the parent emitted again when a child's subtree is exhausted (backtracking);
  stops when the end node is emitted. At most 2n-1 nodes.
* ``shortest_path``: the unique tree path from start to end, both included.

Far-query variants (``dfs_trace_far``, ``shortest_path_far``; our addition, not the paper's): the same
maze and the same answer for a given prompt, but the query is drawn so that the answer grows with the
maze -- the start uniform over the tree, the end uniform over the nodes **farthest** from it (tree
distance). Under uniform queries a bigger maze often has a short answer, so a model can "generalize over
nodes" by reading a longer prompt without ever writing a longer answer (docs/mazes.md);
under far queries an n-node maze's path has at least ceil((d+1)/2) nodes for a tree of diameter d nodes.
A variant computes the same function as its base task, so it shares the base task's marker
(``Task.variant_of``) and the vocabulary does not change.

``parse_maze`` reads a prompt back; ``is_valid_path`` checks a model's output as a walk in the maze.
"""

from __future__ import annotations

import random
import re
from itertools import pairwise

from lengen.tasks.base import Example, Task, register, split

__all__ = [
    "GRID",
    "N_CELLS",
    "wilson_tree",
    "format_prompt",
    "dfs",
    "maze_example",
    "farthest_nodes",
    "parse_maze",
    "is_valid_path",
]

GRID = 8
N_CELLS = GRID * GRID
_TOK = [f"[{i}]" for i in range(N_CELLS + 1)]  # _TOK[k] = "[k]"; index 0 unused


def _grid_neighbours(cell: int) -> tuple[int, ...]:
    r, c = divmod(cell - 1, GRID)
    out = []
    for dr, dc in ((-1, 0), (0, -1), (0, 1), (1, 0)):  # ascending id order
        rr, cc = r + dr, c + dc
        if 0 <= rr < GRID and 0 <= cc < GRID:
            out.append(GRID * rr + cc + 1)
    return tuple(out)


_NEIGHBOURS: tuple[tuple[int, ...], ...] = ((),) + tuple(_grid_neighbours(k) for k in range(1, N_CELLS + 1))


def wilson_tree(rng: random.Random, n: int) -> dict[int, list[int]]:
    """An n-cell tree of the 8x8 grid grown by Wilson's algorithm (see the module docstring).

    Returns the adjacency: cell -> neighbours in ascending order, for exactly the n tree cells.
    """
    if not 1 <= n <= N_CELLS:
        raise ValueError(f"wilson_tree: n={n} is out of range 1..{N_CELLS}")
    rand = rng.random  # bound method: the walk below is the hot loop
    in_tree = [False] * (N_CELLS + 1)
    nxt = [0] * (N_CELLS + 1)
    adj: dict[int, list[int]] = {}
    # Cells not yet in the tree, with swap-remove in O(1); its order depends only on rng draws.
    outside = list(range(1, N_CELLS + 1))
    pos = list(range(-1, N_CELLS))  # pos[cell] = index of cell in `outside`

    def take(cell: int) -> None:
        in_tree[cell] = True
        i, last = pos[cell], outside[-1]
        outside[i], pos[last] = last, i
        outside.pop()

    root = outside[rng.randrange(N_CELLS)]
    take(root)
    adj[root] = []
    size = 1
    while size < n:
        u = outside[rng.randrange(len(outside))]
        v = u
        while not in_tree[v]:
            nbrs = _NEIGHBOURS[v]
            # int(rand() * k) is ~3x faster than rng.choice; its bias (< 2**-50) is immaterial.
            w = nbrs[int(rand() * len(nbrs))]
            nxt[v] = w
            v = w
        path = []  # loop-erased walk u -> ... (last cell before the tree)
        v = u
        while not in_tree[v]:
            path.append(v)
            v = nxt[v]
        for v in reversed(path):  # from the tree outwards, so a partial path stays connected
            w = nxt[v]
            adj[v] = [w]
            adj[w].append(v)
            take(v)
            size += 1
            if size == n:
                break
    for nbrs in adj.values():
        nbrs.sort()
    return adj


def format_prompt(adj: dict[int, list[int]], start: int, end: int) -> str:
    """``[a]:[b][c];...?[start][end]=`` with nodes and neighbours in ascending order.

    >>> format_prompt({1: [2], 2: [1, 10], 10: [2]}, 1, 10)
    '[1]:[2];[2]:[1][10];[10]:[2];?[1][10]='
    """
    parts = [_TOK[v] + ":" + "".join(_TOK[w] for w in sorted(adj[v])) + ";" for v in sorted(adj)]
    return "".join(parts) + "?" + _TOK[start] + _TOK[end] + "="


def dfs(adj: dict[int, list[int]], start: int, end: int) -> tuple[list[int], list[int]]:
    """Depth-first search from ``start`` (neighbours in ascending order) until ``end`` is reached.

    Returns ``(trace, path)``: the visit sequence with backtracking, and the path from start to end
    (the DFS stack when ``end`` is reached; in a tree this is the unique, hence shortest, path).

    >>> dfs({1: [2, 3], 2: [1], 3: [1]}, 1, 3)
    ([1, 2, 1, 3], [1, 3])
    """
    trace = [start]
    if start == end:
        return trace, [start]
    visited = {start}
    stack = [(start, iter(sorted(adj[start])))]
    while stack:
        for w in stack[-1][1]:
            if w not in visited:
                visited.add(w)
                trace.append(w)
                if w == end:
                    return trace, [v for v, _ in stack] + [w]
                stack.append((w, iter(sorted(adj[w]))))
                break
        else:  # subtree exhausted: backtrack, re-emitting the parent
            stack.pop()
            if stack:
                trace.append(stack[-1][0])
    raise ValueError(f"dfs: end node {end} is not reachable from {start}")


def maze_example(task: str, adj: dict[int, list[int]], start: int, end: int) -> Example:
    """The ``dfs_trace`` or ``shortest_path`` example for a given maze and query.

    >>> maze_example("dfs_trace", {1: [2, 9], 2: [1], 9: [1]}, 1, 9)
    Example(prompt='[1]:[2][9];[2]:[1];[9]:[1];?[1][9]=', target='[1][2][1][9]')
    >>> maze_example("shortest_path", {1: [2, 9], 2: [1], 9: [1]}, 1, 9).target
    '[1][9]'
    """
    trace, path = dfs(adj, start, end)
    if task == "dfs_trace":
        nodes = trace
    elif task == "shortest_path":
        nodes = path
    else:
        raise ValueError(f"maze_example: unknown maze task {task!r}")
    return Example(format_prompt(adj, start, end), "".join(_TOK[v] for v in nodes))


def farthest_nodes(adj: dict[int, list[int]], start: int) -> list[int]:
    """The nodes at the largest tree distance from ``start``, ascending.

    >>> farthest_nodes({1: [2, 9], 2: [1, 3], 3: [2], 9: [1]}, 9)
    [3]
    >>> farthest_nodes({1: [2, 9], 2: [1], 9: [1]}, 1)
    [2, 9]
    """
    seen, ring = {start}, [start]
    while True:  # breadth-first, one ring of equal distance at a time; the last ring is the answer
        nxt = sorted({w for v in ring for w in adj[v]} - seen)
        if not nxt:
            return sorted(ring)
        seen.update(nxt)
        ring = nxt


def _sample(rng: random.Random, length: int, task: str, far: bool = False) -> Example:
    adj = wilson_tree(rng, length)
    if far:  # the end among the nodes farthest from a uniform start
        start = rng.choice(sorted(adj))
        end = rng.choice(farthest_nodes(adj, start))
    else:  # an ordered pair of distinct nodes
        start, end = rng.sample(sorted(adj), 2)
    return maze_example(task, adj, start, end)


def dfs_trace(rng: random.Random, length: int) -> Example:
    """``dfs_trace``: tree 1-2, 1-9, start 1, end 9:
    ``[1]:[2][9];[2]:[1];[9]:[1];?[1][9]=`` -> ``[1][2][1][9]``."""
    return _sample(rng, length, "dfs_trace")


def shortest_path(rng: random.Random, length: int) -> Example:
    """``shortest_path``: tree 1-2, 1-9, start 1, end 9:
    ``[1]:[2][9];[2]:[1];[9]:[1];?[1][9]=`` -> ``[1][9]``."""
    return _sample(rng, length, "shortest_path")


def dfs_trace_far(rng: random.Random, length: int) -> Example:
    """``dfs_trace`` under far queries: tree 1-2, 2-3, 1-9, start 9 (the farthest node is 3):
    ``[1]:[2][9];[2]:[1][3];[3]:[2];[9]:[1];?[9][3]=`` -> ``[9][1][2][3]``."""
    return _sample(rng, length, "dfs_trace", far=True)


def shortest_path_far(rng: random.Random, length: int) -> Example:
    """``shortest_path`` under far queries: tree 1-2, 1-9, start 1 (farthest: 2 and 9), end 2:
    ``[1]:[2][9];[2]:[1];[9]:[1];?[1][2]=`` -> ``[1][2]``."""
    return _sample(rng, length, "shortest_path", far=True)


# --- reading prompts and checking outputs -----------------------------------------------------------

_PROMPT_RE = re.compile(r"((?:\[\d+\]:(?:\[\d+\])*;)*)\?\[(\d+)\]\[(\d+)\]=")
_ENTRY_RE = re.compile(r"\[(\d+)\]:((?:\[\d+\])*);")
_NODE_RE = re.compile(r"\[(\d+)\]")


def parse_maze(prompt: str) -> tuple[dict[int, list[int]], int, int]:
    """Read a maze prompt back: ``(adjacency, start, end)``. Raises ValueError if malformed.

    >>> parse_maze('[1]:[2];[2]:[1][10];[10]:[2];?[1][10]=')
    ({1: [2], 2: [1, 10], 10: [2]}, 1, 10)
    """
    m = _PROMPT_RE.fullmatch(prompt)
    if m is None:
        raise ValueError(f"not a maze prompt: {prompt!r}")
    adj: dict[int, list[int]] = {}
    for node, nbrs in _ENTRY_RE.findall(m.group(1)):
        if int(node) in adj:
            raise ValueError(f"node [{node}] listed twice in maze prompt")
        adj[int(node)] = [int(x) for x in _NODE_RE.findall(nbrs)]
    return adj, int(m.group(2)), int(m.group(3))


def is_valid_path(prompt: str, output: str) -> bool:
    """True iff ``output`` is a sequence of node tokens forming a walk along maze edges from the
    prompt's start to its end with no repeated node. In a tree that is exactly the unique path, but this
    checks the walk itself rather than comparing with the generator's answer.
    """
    adj, start, end = parse_maze(prompt)
    nodes = []
    for tok in split(output):
        m = _NODE_RE.fullmatch(tok)
        if m is None:
            return False
        nodes.append(int(m.group(1)))
    if not nodes or nodes[0] != start or nodes[-1] != end or len(set(nodes)) != len(nodes):
        return False
    return all(w in adj.get(v, ()) for v, w in pairwise(nodes))


# Bound: prompt n nodes + n ':' + 2(n-1) neighbour tokens + n ';' + '?' + 2 nodes + '=' = 5n + 2;
# the DFS trace has at most 2n - 1 nodes (each tree edge walked at most twice), the path at most n.
for _generate, _base in (
    (dfs_trace, None),
    (shortest_path, None),
    (dfs_trace_far, "dfs_trace"),
    (shortest_path_far, "shortest_path"),
):
    register(
        Task(
            name=_generate.__name__,
            variant_of=_base,
            family="mazes",
            generate=_generate,
            max_tokens=lambda n: (5 * n + 2) + (2 * n - 1),
            max_length=N_CELLS,
            min_length=2,
            length_unit="nodes",
        )
    )
