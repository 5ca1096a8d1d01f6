"""Maze tasks checked by independent reference code: a separate prompt parser, tree checks, BFS for the
shortest path, a recursive DFS for the trace, and Kirchhoff's theorem for Wilson's uniformity."""

from __future__ import annotations

import random
import re
from collections import deque

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lengen.tasks import Example, get_task
from lengen.tasks.mazes import farthest_nodes, format_prompt, is_valid_path, maze_example, parse_maze

NAMES = ["dfs_trace", "shortest_path", "dfs_trace_far", "shortest_path_far"]
BASE = {"dfs_trace_far": "dfs_trace", "shortest_path_far": "shortest_path"}  # far-query variants


def rc(cell: int) -> tuple[int, int]:
    return (cell - 1) // 8, (cell - 1) % 8


def ref_parse(prompt: str) -> tuple[dict[int, list[int]], int, int]:
    """Parse by splitting on the separators, asserting the exact layout."""
    body, query = prompt.split("?")
    assert re.fullmatch(r"\[\d+\]\[\d+\]=", query), query
    start, end = (int(x) for x in re.findall(r"\d+", query))
    entries = body.split(";")
    assert entries[-1] == ""
    adj = {}
    for entry in entries[:-1]:
        head, tail = entry.split(":")
        assert re.fullmatch(r"\[\d+\]", head) and re.fullmatch(r"(\[\d+\])*", tail), entry
        adj[int(head[1:-1])] = [int(x) for x in re.findall(r"\d+", tail)]
    return adj, start, end


def node_list(target: str) -> list[int]:
    assert re.fullmatch(r"(\[\d+\])+", target), target
    return [int(x) for x in re.findall(r"\d+", target)]


def check_tree(adj: dict[int, list[int]], n: int) -> None:
    nodes = list(adj)
    assert len(nodes) == n and nodes == sorted(nodes), "n nodes in ascending order"
    assert all(1 <= v <= 64 for v in nodes)
    n_edges = 0
    for v, nbrs in adj.items():
        assert nbrs == sorted(nbrs) and len(set(nbrs)) == len(nbrs), "neighbours ascending, no repeats"
        for w in nbrs:
            assert w in adj and v in adj[w], "symmetric"
            (r1, c1), (r2, c2) = rc(v), rc(w)
            assert abs(r1 - r2) + abs(c1 - c2) == 1, f"{v}-{w} is not a grid edge"
            n_edges += 1
    assert n_edges == 2 * (n - 1), "a tree has n-1 edges"
    seen, todo = {nodes[0]}, [nodes[0]]
    while todo:
        for w in adj[todo.pop()]:
            if w not in seen:
                seen.add(w)
                todo.append(w)
    assert len(seen) == n, "connected"


def bfs_path(adj, start, end) -> list[int]:
    parent = {start: None}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in adj[v]:
            if w not in parent:
                parent[w] = v
                queue.append(w)
    path = [end]
    while path[-1] != start:
        path.append(parent[path[-1]])
    return path[::-1]


def recursive_dfs(adj, start, end) -> list[int]:
    trace: list[int] = []

    def visit(v: int, parent: int | None) -> bool:
        trace.append(v)
        if v == end:
            return True
        for w in sorted(adj[v]):
            if w != parent:
                if visit(w, v):
                    return True
                trace.append(v)  # back at v after w's subtree
        return False

    assert visit(start, None)
    return trace


def check(name: str, ex: Example, n: int) -> None:
    adj, start, end = ref_parse(ex.prompt)
    check_tree(adj, n)
    assert start != end and start in adj and end in adj
    got = node_list(ex.target)
    if name in BASE:  # far query: no node is farther from the start than the end
        dist = {v: len(bfs_path(adj, start, v)) for v in adj}
        assert dist[end] == max(dist.values()), (ex.prompt, dist)
    if BASE.get(name, name) == "shortest_path":
        assert got == bfs_path(adj, start, end)
    else:
        assert got == recursive_dfs(adj, start, end)
        assert len(got) <= 2 * n - 1


# --- worked examples -------------------------------------------------------------------------------


def test_worked_examples():
    chain = {1: [2], 2: [1, 10], 10: [2]}
    assert format_prompt(chain, 1, 10) == "[1]:[2];[2]:[1][10];[10]:[2];?[1][10]="
    # The brief's abstract example (1-2, 1-3; not grid-adjacent, but the formatter doesn't care).
    star = {1: [2, 3], 2: [1], 3: [1]}
    assert maze_example("dfs_trace", star, 1, 3).target == "[1][2][1][3]"
    assert maze_example("shortest_path", star, 1, 3).target == "[1][3]"
    # Backtracking re-emits every ancestor on the way up.
    t = {1: [2, 9], 2: [1, 3], 3: [2], 9: [1]}
    assert maze_example("dfs_trace", t, 3, 9).target == "[3][2][1][9]"
    assert maze_example("dfs_trace", t, 1, 9).target == "[1][2][3][2][1][9]"
    assert maze_example("shortest_path", t, 1, 9) == Example("[1]:[2][9];[2]:[1][3];[3]:[2];[9]:[1];?[1][9]=", "[1][9]")


@pytest.mark.parametrize("name", NAMES)
def test_docstring_example_is_correct(name):
    prompt, target = re.search(r"``([^`]+=)`` -> ``([^`]+)``", get_task(name).generate.__doc__).groups()
    check(name, Example(prompt, target), len(ref_parse(prompt)[0]))


# --- property tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**64 - 1), n=st.integers(2, 64))
@example(seed=0, n=2)
@example(seed=0, n=64)
@example(seed=1, n=64)
def test_examples_are_correct(name, seed, n):
    check(name, get_task(name).sample(random.Random(seed), n), n)


def test_same_seed_same_maze_for_both_tasks():
    """Both tasks draw the maze and query identically, so one seed gives the same prompt."""
    for seed in range(20):
        a = get_task("dfs_trace").sample(random.Random(seed), 30)
        b = get_task("shortest_path").sample(random.Random(seed), 30)
        assert a.prompt == b.prompt


def test_far_variant_draws_the_same_maze_and_a_farthest_end():
    """A far-query variant draws the same maze from a seed as its base task; only the query differs,
    its answers are longer on average, and the end is drawn among *all* the farthest nodes."""
    far_len = uniform_len = 0
    for seed in range(200):
        for name, base in BASE.items():
            a = get_task(name).sample(random.Random(seed), 12)
            b = get_task(base).sample(random.Random(seed), 12)
            assert a.prompt.split("?")[0] == b.prompt.split("?")[0]
        far_len += len(node_list(a.target))
        uniform_len += len(node_list(b.target))
    assert far_len > 1.4 * uniform_len  # 12 nodes: 9.3 vs 5.3 nodes on average
    star = {1: [2, 9], 2: [1], 9: [1]}
    assert farthest_nodes(star, 1) == [2, 9] and farthest_nodes(star, 2) == [9]
    assert farthest_nodes({5: []}, 5) == [5]
    # Ties: a 3-node path queried from its middle has two farthest ends; both must be drawn.
    lower = upper = 0
    for seed in range(2000):
        adj, start, end = ref_parse(get_task("shortest_path_far").sample(random.Random(seed), 3).prompt)
        if len(adj[start]) == 2:
            lower += end == min(adj[start])
            upper += end == max(adj[start])
    assert lower > 100 and upper > 100, (lower, upper)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**64 - 1), n=st.integers(2, 64))
def test_parse_maze_roundtrip(seed, n):
    ex = get_task("shortest_path").sample(random.Random(seed), n)
    assert parse_maze(ex.prompt) == ref_parse(ex.prompt)


def test_parse_maze_rejects_malformed():
    for bad in ["", "[1]:[2];[2]:[1];?[1][2]", "[1]:[2];[2]:[1];[1][2]=", "[1]:[2][2]:[1];?[1][2]="]:
        with pytest.raises(ValueError):
            parse_maze(bad)


def corruptions(adj, path: list[int], rng: random.Random) -> list[list[int]]:
    """Invalid outputs derived from a valid path."""
    start, end = path[0], path[-1]
    bad = [
        [],
        path[1:],  # dropped start
        path[:-1],  # dropped end -> wrong endpoint
        path + [path[-2]],  # walks past the end
        path + [path[-2], end],  # repeats nodes
        path[::-1],  # swapped endpoints
    ]
    if len(path) >= 3:
        i = rng.randrange(1, len(path) - 1)
        bad.append(path[:i] + path[i + 1 :])  # dropped interior node
    non_neighbours = [v for v in adj if v not in adj[start] and v != start]
    if non_neighbours:
        bad.append([start, rng.choice(non_neighbours)] + path[1:])  # non-edge step
    others = [v for v in adj if v not in path]
    if others:
        bad.append(path + [others[0]])  # wrong endpoint
    # A step to a grid neighbour that is not a maze edge (walls matter).
    r, c = rc(start)
    for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        rr, cc = r + dr, c + dc
        w = 8 * rr + cc + 1
        if 0 <= rr < 8 and 0 <= cc < 8 and w in adj and w not in adj[start]:
            bad.append([start, w] + path[1:])
    return [b for b in bad if b != path]


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**64 - 1), n=st.integers(2, 64))
@example(seed=0, n=64)
def test_is_valid_path(seed, n):
    rng = random.Random(seed)
    ex = get_task("shortest_path").sample(rng, n)
    assert is_valid_path(ex.prompt, ex.target)
    adj, start, end = ref_parse(ex.prompt)
    path = node_list(ex.target)
    for bad in corruptions(adj, path, rng):
        out = "".join(f"[{v}]" for v in bad)
        assert not is_valid_path(ex.prompt, out), (ex.prompt, out)
    # A DFS trace with backtracking repeats nodes, so it is not a valid path unless it is the path.
    trace = recursive_dfs(adj, start, end)
    assert is_valid_path(ex.prompt, "".join(f"[{v}]" for v in trace)) == (trace == path)
    # Junk tokens are rejected.
    assert not is_valid_path(ex.prompt, ex.target + " ")
    assert not is_valid_path(ex.prompt, ex.target.replace("]", "]x", 1))


# --- Wilson's algorithm --------------------------------------------------------------------------------


def test_small_mazes_are_single_grid_edges():
    rng = random.Random(0)
    edges = set()
    for _ in range(2000):
        adj, _, _ = ref_parse(get_task("shortest_path").sample(rng, 2).prompt)
        check_tree(adj, 2)
        edges.add(tuple(adj))
    assert len(edges) > 80  # the 8x8 grid has 112 edges; all kinds of positions occur


def _grid_edges() -> list[tuple[int, int]]:
    out = []
    for v in range(1, 65):
        r, c = rc(v)
        if c < 7:
            out.append((v, v + 1))
        if r < 7:
            out.append((v, v + 8))
    return out


def _green_matrix() -> list[list[float]]:
    """Inverse of the grid Laplacian with node 64 grounded (Gauss-Jordan, 63x63), padded so that
    G[u][v] is defined for u, v in 1..64 (row/column 64 is 0)."""
    size = 63
    lap = [[0.0] * size for _ in range(size)]
    for u, v in _grid_edges():
        for a, b in ((u, v), (v, u)):
            if a <= size:
                lap[a - 1][a - 1] += 1
                if b <= size:
                    lap[a - 1][b - 1] -= 1
    aug = [row + [1.0 if i == j else 0.0 for j in range(size)] for i, row in enumerate(lap)]
    for col in range(size):
        piv = max(range(col, size), key=lambda i: abs(aug[i][col]))
        aug[col], aug[piv] = aug[piv], aug[col]
        p = aug[col][col]
        aug[col] = [x / p for x in aug[col]]
        for i in range(size):
            if i != col and aug[i][col] != 0.0:
                f = aug[i][col]
                aug[i] = [x - f * y for x, y in zip(aug[i], aug[col])]
    green = [[0.0] * 65 for _ in range(65)]
    for i in range(size):
        for j in range(size):
            green[i + 1][j + 1] = aug[i][size + j]
    return green


def test_full_mazes_are_uniform_spanning_trees():
    """Kirchhoff: in a uniform spanning tree, P(edge uv in tree) = effective resistance R(u, v).

    Checked for the 8 corner edges and the 4 central edges (each class shares R by symmetry).
    A non-uniform tree generator (e.g. randomized DFS) misses these by a wide margin.
    """
    green = _green_matrix()
    resistance = lambda u, v: green[u][u] + green[v][v] - 2 * green[u][v]  # noqa: E731
    assert abs(sum(resistance(u, v) for u, v in _grid_edges()) - 63) < 1e-6  # Foster's theorem
    corner = [(1, 2), (1, 9), (7, 8), (8, 16), (49, 57), (57, 58), (56, 64), (63, 64)]
    centre = [(28, 29), (36, 37), (28, 36), (29, 37)]
    trials = 3000
    rng = random.Random(2024)
    hits = {"corner": 0, "centre": 0}
    for _ in range(trials):
        adj, _, _ = ref_parse(get_task("shortest_path").sample(rng, 64).prompt)
        for cls, edges in (("corner", corner), ("centre", centre)):
            hits[cls] += sum(v in adj[u] for u, v in edges)
    for cls, edges in (("corner", corner), ("centre", centre)):
        expected = resistance(*edges[0])
        assert all(abs(resistance(u, v) - expected) < 1e-9 for u, v in edges)
        freq = hits[cls] / (trials * len(edges))
        # sd <= sqrt(p(1-p)/trials) ~ 0.009 even if the class's edges were perfectly correlated.
        assert abs(freq - expected) < 0.035, (cls, freq, expected)
