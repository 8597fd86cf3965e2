"""The observation tables of the README, made from the tasks' own ``OBSERVATION`` declarations.

``python -m surgsim.tasks.docs`` prints them; a test checks that the README holds them as printed,
so the documentation cannot drift from the code.
"""

from __future__ import annotations

from surgsim._data import data_dir
from surgsim.tasks import task_class
from surgsim.tasks.spec import load_spec


def observation_tables() -> str:
    """One Markdown table per task family, in the order of the spec files, with the spec's default
    tissue (elastic tissue adds the tool force entries at the end)."""
    parts = []
    for path in sorted(data_dir("envs").glob("*.yaml")):
        spec = load_spec(path)
        entries = task_class(spec.task).observation_entries(spec)
        lines = [
            f"#### `{spec.name}-v0`, `{spec.name}Discrete-v0`: {len(entries)} entries (float32)",
            "",
            "| index | name | meaning | unit | divided by |",
            "|--:|---|---|---|---|",
        ]
        lines += [f"| {i} | `{e.name}` | {e.meaning} | {e.unit} | {e.scale} |" for i, e in enumerate(entries)]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    print(observation_tables(), end="")
