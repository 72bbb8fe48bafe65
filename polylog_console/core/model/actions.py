"""The console's actions as data: one registry drives the key bindings, the footer, the command
palette and the help screen (issue 6: "keys are data").

Each :class:`ActionSpec` names an action (``id``), its default key, a title and description for
the palette and help, and whether it changes the workspace (``mutates``): ``--read-only`` hides and
refuses those. Keys can be remapped in ``monitoring.toml``::

    [ui.keys]
    rehydrate = "R"
    validate = "ctrl+v"

:func:`resolve_keys` applies such overrides and reports, one line each, unknown action names,
unusable keys and clashes (two actions on one key, or an action on a key the console reserves),
keeping the defaults where an override cannot be honoured. Nothing here knows about Textual: the
UI passes in a ``normalize`` function that turns ``"?"`` into its key name.

Read-only decisions (documented in the README as well):

* ``rehydrate`` rewrites ``catalogs/``: mutating.
* ``bundle`` writes a file into ``memory/escalations/``: mutating. Observers can still copy a
  checkpoint's raw JSON (``copy``).
* ``acknowledge`` records an operator decision for the whole incident (audit log, banner): mutating.
* ``validate``, ``recompute`` and ``replicas`` only read; they are allowed and, like every action,
  audited with the actor (the audit log is accountability, not workspace state).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ActionSpec:
    id: str
    key: str  # default key, as written in monitoring.toml (a character or a key name like "f5")
    title: str
    description: str
    mutates: bool = False  # changes the workspace: hidden and refused in read-only mode
    background: bool = False  # runs as a background worker with progress and cancel
    confirm: str | None = None  # a question asked before running
    footer: bool = True  # shown in the footer (all actions are in the palette and help)
    group: str = "view"  # "navigation", "runbook", "view" or "app": sections of the help screen


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("validate", "v", "Validate source",
               "Check stable_polyforms.jsonl against the schema (runbook step 2)",
               background=True, group="runbook"),
    ActionSpec("rehydrate", "r", "Rehydrate catalogs",
               "Rebuild catalogs/ from stable_polyforms.jsonl, atomically (runbook step 3)",
               mutates=True, background=True, group="runbook",
               confirm="Rehydrate rewrites catalogs/ (registry, attachment graph, scaler tables, metadata) "
                       "from stable_polyforms.jsonl. Continue?"),
    ActionSpec("recompute", "d", "Recompute digest",
               "Digest catalogs/registry.json afresh and compare it with the latest checkpoint (runbook step 4)",
               background=True, group="runbook"),
    ActionSpec("replicas", "p", "Verify replicas",
               "Check digest parity of every configured replica (runbook step 5)",
               background=True, group="runbook"),
    ActionSpec("bundle", "b", "Escalation bundle",
               "Write the escalation bundle to memory/escalations/ and copy it to the clipboard (runbook §6)",
               mutates=True, background=True, group="runbook"),
    ActionSpec("acknowledge", "a", "Acknowledge alert",
               "Mark the active alerts as acknowledged by you (recorded in the audit log)",
               mutates=True, footer=False, group="runbook"),
    ActionSpec("cancel", "x", "Cancel action",
               "Cancel the running background action(s), after asking (esc never cancels: it only leaves "
               "a box, a filter or a screen)", footer=False, group="runbook"),
    ActionSpec("follow", "f", "Follow / pause", "Follow new checkpoints, or pause the table where it is",
               footer=False),
    ActionSpec("filter", "slash", "Filter",
               "Filter the focused panel, live as you type (enter keeps it, esc clears it): words match the "
               "row's text; field:value narrows it (checkpoints match:no label: digest: time:; diff kind: ns:; "
               "replicas match: name:; activity kind: level:; errors kind: field: line:)", footer=False),
    ActionSpec("next_match", "n", "Next match", "Jump to the next row matching the last filter", footer=False,
               group="navigation"),
    ActionSpec("prev_match", "N", "Previous match", "Jump to the previous row matching the last filter",
               footer=False, group="navigation"),
    ActionSpec("wide", "w", "Wide columns", "Show truncated columns (digests) in full, or narrow again",
               footer=False),
    ActionSpec("messages", "M", "Message history", "Every notification shown so far, newest last", footer=False),
    ActionSpec("detail", "enter", "Row detail",
               "Show the selected row of the focused panel in full (a checkpoint's JSON, an error's raw line, "
               "an activity's audit record, a replica's answer, a diff row), copyable", footer=False),
    ActionSpec("copy", "c", "Copy checkpoint JSON",
               "Copy the selected checkpoint's raw JSON to the clipboard (OSC 52, works over SSH)", footer=False),
    ActionSpec("panel_checkpoints", "1", "Checkpoints panel", "Show and focus the checkpoints", footer=False,
               group="navigation"),
    ActionSpec("panel_diff", "2", "Diff panel", "Show and focus the symbol diff", footer=False, group="navigation"),
    ActionSpec("panel_replicas", "3", "Replicas panel", "Show and focus replica parity", footer=False,
               group="navigation"),
    ActionSpec("panel_activity", "4", "Activity panel", "Show and focus the activity log", footer=False,
               group="navigation"),
    ActionSpec("panel_errors", "5", "Errors panel", "Show and focus the ingest errors", footer=False,
               group="navigation"),
    ActionSpec("timeline", "i", "Incident timeline",
               "The feed's incidents, their events, and the state as of any checkpoint (replay)",
               footer=False, group="view"),
    ActionSpec("alerts", "A", "Active alerts",
               "List every active alert: code, since, consecutive, sinks delivered, acknowledged by", footer=False),
    ActionSpec("next_panel", "right_square_bracket", "Next panel",
               "Show the next panel (checkpoints, diff, replicas, activity, errors)", footer=False, group="navigation"),
    ActionSpec("prev_panel", "left_square_bracket", "Previous panel", "Show the previous panel", footer=False,
               group="navigation"),
    ActionSpec("theme", "t", "Switch theme", "Choose the console theme (themes/*.toml)", footer=False,
               group="app"),
    ActionSpec("help", "question_mark", "Help", "Every key and what it does", group="app"),
    ActionSpec("quit", "q", "Quit", "Leave the console (running actions are cancelled)", group="app"),
)

BY_ID: dict[str, ActionSpec] = {spec.id: spec for spec in ACTIONS}

# Keys the console uses for navigation and Textual's own functions; an action cannot take them.
RESERVED_KEYS: dict[str, str] = {
    "ctrl+p": "the command palette",
    "ctrl+q": "quit",
    "ctrl+c": "copy / quit hint",
    "up": "move the cursor", "down": "move the cursor", "pageup": "scroll", "pagedown": "scroll",
    "home": "scroll to the top", "end": "scroll to the end", "tab": "focus", "shift+tab": "focus",
    "j": "move the cursor", "k": "move the cursor", "g": "the first row", "G": "the newest row",
    "ctrl+d": "half a page down", "ctrl+u": "half a page up",
}


def available(read_only: bool) -> tuple[ActionSpec, ...]:
    """The actions offered to this console: all of them, or those that do not change the workspace."""
    return tuple(spec for spec in ACTIONS if not (read_only and spec.mutates))


@dataclass(frozen=True)
class Keymap:
    """The resolved keys: ``keys[action_id]`` is a tuple of normalized key names (empty: unbound)."""

    keys: Mapping[str, tuple[str, ...]]
    problems: tuple[str, ...] = ()

    def key_for(self, action_id: str) -> str | None:
        keys = self.keys.get(action_id, ())
        return keys[0] if keys else None

    def action_for(self, key: str) -> str | None:
        for action_id, keys in self.keys.items():
            if key in keys:
                return action_id
        return None


def _split(value: str) -> list[str]:
    # "," alone is a key; otherwise a comma separates alternatives ("v,f2").
    if value.strip() == ",":
        return [","]
    return [part.strip() for part in value.split(",")]


def resolve_keys(overrides: Mapping[str, str], normalize: Callable[[str], str | None],
                 actions: Iterable[ActionSpec] = ACTIONS) -> Keymap:
    """Defaults plus ``overrides`` (``{action_id: "key[,key...]"}``).

    ``normalize(key)`` returns the canonical key name or None when the key is not usable. Problems
    (unknown action, unusable key, clash) come back as one-line messages; where an override cannot
    be honoured the action keeps its default key.
    """
    specs = list(actions)
    ids = {spec.id for spec in specs}
    problems: list[str] = []
    defaults: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        key = normalize(spec.key)
        defaults[spec.id] = (key,) if key else ()
    chosen = dict(defaults)
    overridden: set[str] = set()
    for action_id, value in overrides.items():
        if action_id not in ids:
            known = ", ".join(sorted(ids))
            problems.append(f'ui.keys: unknown action "{action_id}" (known: {known})')
            continue
        if not isinstance(value, str) or not value.strip():
            problems.append(f'ui.keys.{action_id}: expected a key like "v", "R", "ctrl+r" or "f5"')
            continue
        keys: list[str] = []
        bad = False
        for part in _split(value):
            key = normalize(part) if part else None
            if key is None:
                problems.append(f'ui.keys.{action_id}: "{part}" is not a key this console understands; '
                                f'keeping "{chosen[action_id][0] if chosen[action_id] else "none"}"')
                bad = True
                break
            if key in RESERVED_KEYS:
                problems.append(f'ui.keys.{action_id}: "{part}" is reserved for {RESERVED_KEYS[key]}; '
                                f"keeping the default")
                bad = True
                break
            if key not in keys:
                keys.append(key)
        if not bad:
            chosen[action_id] = tuple(keys)
            overridden.add(action_id)

    # Clashes: the overrides involved give way to the defaults, until no key is taken twice.
    while True:
        owners: dict[str, list[str]] = {}
        for spec in specs:
            for key in chosen[spec.id]:
                owners.setdefault(key, []).append(spec.id)
        clashes = [(key, who) for key, who in owners.items() if len(who) > 1]
        if not clashes:
            break
        reverted = False
        for key, who in clashes:
            culprits = [a for a in who if a in overridden]
            if not culprits:
                continue
            problems.append(f'ui.keys: "{key}" would run both {" and ".join(who)}; '
                            f"ignoring the remapping of {', '.join(culprits)}")
            for action_id in culprits:
                chosen[action_id] = defaults[action_id]
                overridden.discard(action_id)
            reverted = True
        if not reverted:  # clashing defaults (cannot happen with ACTIONS): unbind the later ones
            for key, who in clashes:
                for action_id in who[1:]:
                    chosen[action_id] = tuple(k for k in chosen[action_id] if k != key)
                    problems.append(f'"{key}" is taken by {who[0]}; {action_id} is left without it')
    return Keymap(chosen, tuple(problems))
