"""The worker's push of main in cutover: register the update, push that exact commit, confirm.

Why each step is shaped this way:

- The commit pushed is the commit the check ran on: the tested sha is the landed sha. This
  module never merges; when main moved, the worker merges and checks again before a new try.
- The registration (a fenced write) answers a single-use nonce that buys exactly this one
  update of main from `old` to `new`. It reaches git only through `GIT_CONFIG_COUNT`/
  `GIT_CONFIG_KEY_0=push.pushOption`/`GIT_CONFIG_VALUE_0`: `-o` would put it on the command
  line (readable by every user in /proc) and would silently replace `push.pushOption`. The
  git adapter scrubs inherited `GIT_TRACE*`/`GIT_CURL_VERBOSE` and logs variable names only.
- `--force-with-lease=<main>:<old>`: git's compare-and-swap, so that two updates from the same
  `old` can never both land.
- Right after the self-fence check and just before `git push` is the one place a stale holder
  can be caught only by the server: the test-only pause point sits exactly there.
- The push's own answer (`--porcelain`) decides when it names this commit and main as updated
  (or already there): git prints that line only after the server moved the ref from the `old`
  our lease named to this commit, under its lock, so it is the server's word that main went
  `old → new` (reading main again could only see a later move, not undo ours; the service still
  checks the registration against main before recording `integrated`). Every other answer —
  a timeout that may have landed, a transport error, a refusal, a lost compare-and-swap — is
  confirmed by `git ls-remote`. A try that did not land is `failed` at the service before
  another registration is made.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from integrator.gitops import Git, GitError, GitTimeout, PushResult
from integrator.worker.service_client import LeaseLost, ServiceClient, code_of, message_of, refused

log = logging.getLogger(__name__)

ORIGIN = "origin"
#: What git says when the server does not advertise push options.
NO_PUSH_OPTIONS = "does not support push options"
#: The first words of a refusal by our pre-receive hook on the service's verdict.
POLICY_REFUSAL = re.compile(r"^integrator: refused \S")
#: What the hook says when it decided without the service (deadline, service down).
HOOK_FALLBACK = "integrator: service unavailable"
PAUSED_LINE = "PAUSED-BEFORE-PUSH"


class Verdict(StrEnum):
    """What became of one push of an integration commit."""

    #: main is at the commit (the push's own answer proved it, or ls-remote confirmed it).
    landed = "landed"
    #: Our hook refused it on the service's verdict (or a hook chained before ours did).
    refused = "refused"
    #: Transport error, the hook's deadline, or main moved (lost compare-and-swap): try again.
    retry = "retry"
    #: The server does not accept push options: a configuration error.
    unsupported = "unsupported"
    #: The service left cutover before the registration: nothing was pushed.
    withdrawn = "withdrawn"


@dataclass(frozen=True)
class PushFacts:
    """What one registered push did, for `integrator.worker.trial.judge` to decide on."""

    verdict: Verdict
    #: The integration commit that was (to be) pushed.
    new: str
    registration_id: int | None = None
    #: main after the push: as its own answer proved it, else as `git ls-remote` saw it (None:
    #: not read).
    main: str | None = None
    #: The server's `remote:` lines, without the prefix.
    remote_lines: tuple[str, ...] = ()
    #: One line: what happened.
    detail: str = ""


def remote_lines(stderr: str) -> tuple[str, ...]:
    """The server's `remote:` lines, without git's prefix and padding."""
    return tuple(
        line.removeprefix("remote:").strip()
        for line in stderr.splitlines()
        if line.startswith("remote:") and line.removeprefix("remote:").strip()
    )


#: Status flags of `git push --porcelain` for a ref that now holds what was pushed.
UPDATED = (" ", "+", "=")


def _status_line(stdout: str, ref: str) -> tuple[str, str, str] | None:
    """(flag, source, summary) of `ref` in `git push --porcelain` output."""
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1].endswith(f":{ref}"):
            return parts[0] or " ", parts[1].removesuffix(f":{ref}"), parts[2]
    return None


def proves_landed(result: PushResult, ref: str, new: str) -> bool:
    """The push's own status line says the server holds `new` at `ref` (updated, forced or
    already up to date): no need to read the ref back."""
    status = _status_line(result.stdout, ref)
    return status is not None and status[0] in UPDATED and status[1] == new


def read_push(result: PushResult, ref: str) -> tuple[Verdict, str]:
    """What git's answer to the push says (before ls-remote confirms it), and one line why.

    A refusal by our hook on the service's verdict is final for this candidate; the hook's
    fallback (deadline, service unreachable), a transport error and a lost compare-and-swap
    are worth another registered try.
    """
    lines = remote_lines(result.stderr)
    if NO_PUSH_OPTIONS in result.stderr:
        return Verdict.unsupported, "the git server does not accept push options"
    status = _status_line(result.stdout, ref)
    if status is None:
        tail = " ".join(result.stderr.strip().splitlines()[-2:]) or "no answer"
        return Verdict.retry, f"the push did not reach the server: {tail}"
    flag, _, summary = status
    if flag in UPDATED:
        return Verdict.landed, f"the server accepted the update ({summary})"
    if "[remote rejected]" in summary and "hook declined" in summary:
        if any(line.startswith(HOOK_FALLBACK) for line in lines):
            return Verdict.retry, f"the hook decided without the service: {lines[0]}"
        refusal = next((line for line in lines if POLICY_REFUSAL.match(line)), None)
        return Verdict.refused, refusal or (lines[0] if lines else summary)
    return Verdict.retry, f"main moved or could not be updated: {summary}"


def pause_before_push() -> None:
    """The test-only pause point: say so on stderr, then stop this process until SIGCONT."""
    sys.stderr.write(f"{PAUSED_LINE}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGSTOP)


def push_commit(git: Git, ref: str, old: str, new: str, nonce: str, registration: int) -> PushFacts:
    """Push `new` onto `ref` at `old` with the nonce as a push option; unless git's answer
    proves the server holds `new` at `ref`, read the ref back with ls-remote."""
    option = {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "push.pushOption",
        "GIT_CONFIG_VALUE_0": f"integrator-push={nonce}",
    }
    lines: tuple[str, ...] = ()
    try:
        result = git.push(ORIGIN, f"{new}:{ref}", force_with_lease=f"{ref}:{old}", env=option)
    except GitTimeout as exc:
        verdict, detail = Verdict.retry, f"the push timed out: {exc}"
    else:
        verdict, detail = read_push(result, ref)
        lines = remote_lines(result.stderr)
        if verdict is Verdict.landed and proves_landed(result, ref, new):
            return PushFacts(verdict, new, registration, new, lines, detail)
    if verdict is Verdict.unsupported:
        return PushFacts(verdict, new, registration, None, lines, detail)
    main = _main(git, ref, trust_push=verdict is Verdict.landed)
    if main == new or (main is None and verdict is Verdict.landed):
        return PushFacts(Verdict.landed, new, registration, main, lines, detail)
    if verdict is Verdict.landed:
        verdict = Verdict.retry
        detail = f"the push said it landed, but main is at {(main or '?')[:12]}"
    return PushFacts(verdict, new, registration, main, lines, detail)


def _main(git: Git, ref: str, trust_push: bool) -> str | None:
    """`ref` on the server now; None when it cannot be read but the push said it landed (the
    service checks main itself before it records anything)."""
    try:
        return git.ls_remote(ORIGIN, [ref]).get(ref)
    except GitError:
        if trust_push:
            return None
        raise


class Lander:
    """Registers, pushes and confirms one integration commit of main."""

    def __init__(
        self,
        git: Git,
        service: ServiceClient,
        ref: str,
        *,
        grant: Callable[[], dict[str, Any]],
        fenced_ok: Callable[[], bool],
        pause: bool = False,
    ) -> None:
        self.git = git
        self.service = service
        self.ref = ref
        #: `{"epoch", "token"}` of the held grant (raises LeaseLost when none is held).
        self.grant = grant
        #: The worker's self-fence.
        self.fenced_ok = fenced_ok
        self.pause = pause

    def land(
        self,
        candidate_id: int,
        old: str,
        new: str,
        attempt: str,
        checks: dict[str, dict[str, Any]] | None = None,
    ) -> PushFacts:
        """One registered push of `new` (whose first parent is `old`) onto main; `checks`
        are the checks that passed on `new` (the service refuses a registration without a
        required one)."""
        answer = self.service.post(
            "/v1/registrations",
            {**self.grant(), "candidate_id": candidate_id, "ref": self.ref,
             "old": old, "new": new, "attempt": attempt, "checks": checks or {}},
        )  # fmt: skip
        if answer.status_code == 409 and code_of(answer) == "not_in_cutover":
            return PushFacts(Verdict.withdrawn, new, detail=message_of(answer))
        if answer.status_code != 201:
            refused(answer, f"registration of {new[:12]} for candidate {candidate_id}")
        body = answer.json()
        registration = int(body["id"])
        # The self-fence: pushing main is irreversible.
        if not self.fenced_ok():
            raise LeaseLost(
                f"self-fence: no renewal confirmed within the renew deadline; not pushing "
                f"{new[:12]} (registration {registration})"
            )
        if self.pause:
            pause_before_push()
        facts = push_commit(self.git, self.ref, old, new, str(body["nonce"]), registration)
        log.info("registration %d: %s (%s)", registration, facts.verdict, facts.detail)
        if facts.verdict is not Verdict.landed:
            self._fail(registration, facts.detail)
        return facts

    def _fail(self, registration: int, reason: str) -> None:
        answer = self.service.post(
            f"/v1/registrations/{registration}/fail", {**self.grant(), "reason": reason[:2000]}
        )
        if answer.status_code != 200:
            log.warning(
                "registration %d could not be marked failed: HTTP %d %s",
                registration, answer.status_code, message_of(answer),
            )  # fmt: skip
