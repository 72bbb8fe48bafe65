"""The runbook's actions from the console: starting them (after a confirmation where the registry
asks for one), their progress and outcome, cancelling, acknowledging, and replica parity.

What an action does is in :mod:`polylog_console.core.runbook.operations`; the lifecycle (audit,
thread) in :mod:`polylog_console.ui.runner`. Here: what the screen shows and which follow-up the
session performs on the loop thread (compare again after recompute or rehydrate).

Replica parity belongs to the stored digest it was checked against (issue 11: after a rehydrate
the panel still said "✔ match" against the old digest): when the stored digest changes, the
results are shown stale and checked again.
"""

from __future__ import annotations

from typing import Any

from polylog_console.core.infra.text import safe_text
from polylog_console.core.model.actions import BY_ID, ActionSpec
from polylog_console.core.model.events import ActionEvent
from polylog_console.core.runbook.operations import (
    OPERATIONS,
    RECHECK,
    RECHECK_AFTER_REHYDRATE,
    SELF_AUDITED,
    OperationContext,
)
from polylog_console.ui.keymap import key_display
from polylog_console.ui.messages import ActionDone, ActionProgressed
from polylog_console.ui.screens.confirm import ConfirmScreen
from polylog_console.ui.widgets.actionbar import ActionBar
from polylog_console.ui.widgets.replicas import ReplicaTable

SEVERITY = {"ok": "information", "problem": "warning"}


class Actions:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.parity: Any = None  # the last ParityReport
        self.parity_at: float | None = None
        self.parity_stale = False

    # -- starting ---------------------------------------------------------------------------------

    def start(self, spec: ActionSpec) -> None:
        app = self.app
        if app.runner.is_running(spec.id):
            app.say(f"{spec.title} is already running", severity="warning")
            return
        session = app.session
        ctx = OperationContext(app.ws, app.config, session.audit.actor, monitor_view=session.monitor.snapshot(),
                               parity=self.parity)
        operation = OPERATIONS[spec.id]
        if app.runner.start(spec.id, lambda progress: operation(ctx, progress)):
            cancel = app.keymap.key_for("cancel")
            app.query_one(ActionBar).start(spec.id, spec.title, key_display(cancel) if cancel else "—")
            app.action_started(spec.id)

    def confirm_then_start(self, spec: ActionSpec) -> None:
        app = self.app
        if app.runner.is_running(spec.id):
            app.say(f"{spec.title} is already running", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.start(spec)
            else:
                app.say(f"{spec.id} not started")

        app.push_screen(ConfirmScreen(spec.title, spec.confirm or "Continue?"), answered)

    def run(self, spec: ActionSpec) -> None:
        if spec.confirm:
            self.confirm_then_start(spec)
        else:
            self.start(spec)

    def publish(self, events: list[Any]) -> None:
        """Action lifecycle events go through the session (audited with the actor), except for
        actions whose core function writes its own audit events: the activity log shows those from
        the audit log itself."""
        if not (events and all(getattr(e, "action", None) in SELF_AUDITED for e in events)):
            self.app.session.publish(events)

    # -- progress and outcome ---------------------------------------------------------------------------

    def progressed(self, message: ActionProgressed) -> None:
        bars = self.app.query(ActionBar)
        row = bars.first().row(message.action_id) if bars else None
        if row is not None:
            update = message.update
            row.set_progress(update.done, update.total, safe_text(update.message, 120))

    def done(self, message: ActionDone) -> None:
        app = self.app
        done = message.done
        if not app.query(ActionBar):  # finished while the console was closing: audited, nothing to show
            return
        app.query_one(ActionBar).finish(done.action_id)
        spec = BY_ID[done.action_id]
        outcome = done.outcome
        notify = True
        if done.phase == "finished" and outcome is not None:
            if outcome.followup == RECHECK:
                app.session.recheck()
            elif outcome.followup == RECHECK_AFTER_REHYDRATE:
                app.session.recheck(after_rehydrate=True)
            if done.action_id == "replicas":
                self.parity = outcome.data
                self.parity_at = app.clock()
                self.parity_stale = False
                app.query_one(ReplicaTable).show(list(outcome.data.replicas), self.parity_at, app.clock())
            elif done.action_id == "bundle":
                app.copier.copy(outcome.data.markdown, "the bundle", local=False, prefix=f"{done.message}; ")
                notify = False  # the clipboard's notice says it all, once it knows
            severity = SEVERITY.get(outcome.outcome, "information")
        else:
            severity = "warning" if done.phase == "cancelled" else "error"
        if notify:
            app.say(done.message, title=f"{spec.title}: {done.phase}", severity=severity, timeout=8)
        app.action_ended(done)
        app.refresh_status()

    # -- cancelling ----------------------------------------------------------------------------------------

    def cancel(self) -> None:
        app = self.app
        if not app.runner.running:
            app.say("no action is running")
            return
        names = ", ".join(BY_ID[a].title for a in app.runner.running)

        def answered(yes: bool | None) -> None:
            if yes:
                self.cancel_now()
            else:
                app.say("nothing cancelled")

        app.push_screen(ConfirmScreen("Cancel action", f"Cancel {names}? It stops at its next safe point; "
                                                        "nothing half-done is kept."), answered)

    def cancel_now(self) -> list[str]:
        app = self.app
        cancelled = app.runner.cancel()
        bar = app.query_one(ActionBar)
        for action_id in cancelled:
            row = bar.row(action_id)
            if row is not None:
                row.set_cancelling()
        return cancelled

    # -- acknowledging ---------------------------------------------------------------------------------------

    def acknowledge(self) -> None:
        """Acknowledge the active alerts: audited first; when the audit log cannot be written,
        nothing is acknowledged and the operator is told why (an acknowledgement is accountability)."""
        app = self.app
        actor = app.session.audit.actor
        pending = [b for b in app.dashboard.active if b.acknowledged_by is None]
        if not pending:
            app.say("no unacknowledged alert")
            return
        known = getattr(app.session.audit, "last_error", None)
        if known:  # known unwritable: nothing is queued that would claim an acknowledgement later
            app.say(f"acknowledge failed: {known}; nothing was acknowledged", title="Acknowledge",
                    severity="error", timeout=15)
            return
        for banner in pending:
            record = app.session.audit.append("acknowledged", code=banner.code, dedup_key=banner.dedup_key,
                                              summary=banner.summary)
            error = record.get("audit_error")
            if error:
                app.say(f"acknowledge failed: {error}; nothing was acknowledged", title="Acknowledge",
                        severity="error", timeout=15)
                return
        done = app.dashboard.acknowledge(actor, now=app.clock())
        codes = ", ".join(b.code for b in done)
        text = f"acknowledged {codes} as {actor}"
        app.session.publish([ActionEvent("acknowledge", "finished", text, "ok",
                                         {"acknowledged": [b.to_json() for b in done]})])
        app.say(text, title="Acknowledged")
        app.show_banner()
        if app.config.alerts.alertmanager is not None:
            self.silence(actor)

    def silence(self, actor: str) -> None:
        """With Alertmanager configured, the acknowledgement is also a silence of the current drift
        (SPEC §12), created in a worker thread; what happened is said plainly either way."""
        app = self.app
        config = app.config
        runner = app.runner

        def work() -> None:
            from polylog_console.core.fleet.silences import acknowledge
            from polylog_console.ui.messages import Notice

            try:
                result = acknowledge(config, actor)
            except Exception as exc:  # NothingToAcknowledge, AckError, ApiError, a connection failure
                runner.tell(Notice(safe_text(f"Alertmanager silence not created: {exc}", 400), "Acknowledge",
                                   "warning", 15))
                return
            until = result.to_json().get("ends_at")
            runner.tell(Notice(safe_text(f"silence {result.silence_id} created on {result.alertmanager} "
                                         f"until {until}", 400), "Acknowledged", "information", 10))

        app.run_worker(work, thread=True, group="silence", exit_on_error=False)

    # -- replica parity --------------------------------------------------------------------------------------

    def check_parity(self, stored_digest: str | None) -> None:
        """The stored digest is ``stored_digest`` now: results for another one are stale."""
        parity = self.parity
        if parity is None or stored_digest is None or self.parity_stale:
            return
        if parity.stored_digest == stored_digest:
            return
        self.parity_stale = True
        app = self.app
        old = parity.stored_digest[:12]
        app.query_one(ReplicaTable).mark_stale(f"stale: checked against the old stored digest {old}; re-checking…")
        if not app.runner.is_running("replicas"):
            self.start(BY_ID["replicas"])
