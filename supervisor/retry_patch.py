"""Carries a retry's words to the model (rules: `core/retry_words.py`): the job's payload text is
changed for the one `cron.run` of the retry and put back right after, every step journaled in the
store (`store/job_patches.py`), so no job is ever left changed: a gatewayd that dies between the
change and the restore, or a connection that closes there, restores it at its next start, and only
if the job still holds gatewayd's words (a user's edit since then stands).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import Any

from supervisor import logs
from supervisor.core.retry_words import Restore, patch, payload_text, restore_step, with_words
from supervisor.crashpoints import crashpoint
from supervisor.errors import GatewayError, StoreError
from supervisor.gateway.rpc import RpcClient, paged
from supervisor.store.job_patches import JobPatchRecords

log = logs.get("gatewayd.recovery")


async def read_job(rpc: RpcClient, job_id: str) -> dict[str, Any] | None:
    """The job as `cron.list` shows it (both versions page it), or None when it is gone."""
    payload = await paged(rpc, "cron.list", {"includeDisabled": True}, "jobs", 200)
    jobs = payload.get("jobs", []) if isinstance(payload, dict) else []
    return next((j for j in jobs if isinstance(j, dict) and j.get("id") == job_id), None)


class RetryPatcher:
    def __init__(self, records: JobPatchRecords, boot: int) -> None:
        self.records = records
        self.boot = boot

    async def restore_left(self, rpc: RpcClient, running: Collection[str] = ()) -> None:
        """Put back every job a previous gatewayd (or connection, or a failed restore) left changed,
        but those whose retry is still under way here (`running`: action keys; 2.x's cron.run
        answers when the run ends, and may wait behind another job before taking its payload).
        Raises a gateway error when the gateway cannot say."""
        for row in await self.records.unsettled():
            if row["action_key"] not in running:
                await self._restore(rpc, row)

    @asynccontextmanager
    async def carrying(self, rpc: RpcClient, job_id: str, action_key: str, retry_words: str) -> AsyncIterator[bool]:
        """Within the block the job's payload text starts with `retry_words`; True if it does (a job
        with no text payload, or one that refused the change, runs as it is: False)."""
        job = await read_job(rpc, job_id)
        current = payload_text(job)
        if current is None:
            yield False
            return
        patched = with_words(current.text, retry_words)
        patch_id = await self.records.patching(job_id, action_key, current.kind, current.field, current.text,
                                               patched, self.boot)
        if patch_id is None:  # journaled by an earlier attempt at this very retry: restore_left settled it
            yield False
            return
        crashpoint("patch-journaled")
        try:
            await rpc.call("cron.update", {"id": job_id, "patch": patch(current.kind, current.field, patched)})
        except GatewayError as exc:
            # Refused, or the connection closed: whether it took effect is read at the next restore.
            log.warning("retry_words_not_set", job=job_id, error=str(exc))
            await self._restore_quietly(rpc, patch_id)
            yield False
            return
        await self.records.set_state(patch_id, "patched")
        crashpoint("patched")
        try:
            yield True
        finally:
            await self._restore_quietly(rpc, patch_id)

    async def _restore_quietly(self, rpc: RpcClient, patch_id: int) -> None:
        """Restore now; if the gateway or the store cannot, the row stays unsettled and the next
        start of recovery restores it (it runs `restore_left` before any retry)."""
        try:
            rows = [r for r in await self.records.unsettled() if r["id"] == patch_id]
            for row in rows:
                await self._restore(rpc, row)
        except (GatewayError, StoreError) as exc:
            log.warning("retry_words_restore_deferred", patch=patch_id, error=str(exc))

    async def _restore(self, rpc: RpcClient, row: dict[str, Any]) -> None:
        job = await read_job(rpc, row["job_id"])
        step = restore_step(payload_text(job), job is not None, row["original"], row["patched"])
        if step is Restore.RESTORE:
            await rpc.call("cron.update", {"id": row["job_id"],
                                           "patch": patch(row["kind"], row["field"], row["original"])})
            crashpoint("restore-sent")
            state = "restored"
        elif step is Restore.NOTHING:
            state = "restored" if row["state"] == "patched" else "unpatched"
        else:
            state = step.value
        await self.records.set_state(int(row["id"]), state)
        (log.warning if step in (Restore.LEFT, Restore.GONE) else log.info)(
            "retry_words_restored", job=row["job_id"], outcome=state)
