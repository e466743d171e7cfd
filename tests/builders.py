"""Event builders with defaults, so each test sets only what it is about."""

from __future__ import annotations

from typing import Any

NOW = "2026-11-24T12:00:00+00:00"


def review_approved(slug: str = "feat-1", **overrides: Any) -> dict[str, Any]:
    fields = {
        "slug": slug,
        "approved_at": NOW,
        "review_round": 1,
        "reviewer_session_id": "reviewer-1",
    }
    return {"type": "review_approved", "fields": {**fields, **overrides}}


def finalize_ready(slug: str, branch: str, sha: str, **overrides: Any) -> dict[str, Any]:
    fields = {
        "slug": slug,
        "branch": branch,
        "sha": sha,
        "worker_session_id": "worker-1",
        "orchestrator_session_id": "orch-1",
        "ready_at": NOW,
    }
    return {"type": "finalize_ready", "fields": {**fields, **overrides}}


def branch_pushed(
    branch: str, sha: str, remote: str = "canonical", key: str | None = None, **overrides: Any
) -> dict[str, Any]:
    fields = {"branch": branch, "sha": sha, "remote": remote, "pushed_at": NOW, "pusher": "alice"}
    envelope: dict[str, Any] = {"type": "branch_pushed", "fields": {**fields, **overrides}}
    if key:
        envelope["idempotency_key"] = key
    return envelope


def push_check(ref: str, old: str, new: str, **extra: Any) -> dict[str, Any]:
    """A hook's push check of one update of `ref` by alice (first-parent unchecked)."""
    return {
        "repository": "canonical",
        "hook_instance": "git1:/srv/canonical.git",
        "hook_version": "1",
        "pusher": "alice",
        "identity_source": "plain",
        "updates": [
            {"ref": ref, "resolved_ref": ref, "old": old, "new": new,
             "fast_forward": True, "first_parent": False},
        ],
        **extra,
    }  # fmt: skip
