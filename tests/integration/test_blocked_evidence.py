"""What a blocked candidate records, with real repositories, a real service and real workers.

One run per backend, shared by the tests of this module (they only read what it left): a
canonical repository with the hooks installed, candidates that each fail one way — every kind
of merge conflict, a failing check, a check that hangs past its timeout, a push a hook refuses,
a push our own hook refuses, a push the server never takes — each followed by a clean one.
The queue is first predicted in shadow by `integrator worker --once`, then switched to cutover
and worked for real by a long-running worker (a long poll interval: an idle sleep would show).
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from integrator.db import make_engine
from integrator.models import Event
from integrator.settings import Settings, get_settings
from tests.builders import branch_pushed, finalize_ready, review_approved
from tests.conflict_repos import CONFLICTS, conflicting_sides
from tests.conftest import BACKENDS, truncate_all
from tests.gitrepos import git
from tests.support import TokenMaker
from tests.worker_support import WorkerWorld, process_gone, refs_of, wait_for

#: Marker files: the check and the wrapped pre-receive hook act on them.
FAILS, HANGS, REFUSED, MISMATCH, UNAVAILABLE = (
    "fail-me.txt", "hang-me.txt", "refuse-me.txt", "mismatch-me.txt", "unavailable-me.txt"
)  # fmt: skip
TIMEOUT = "3"
#: The order candidates are queued in: each failing one is followed by a clean one.
PLAN = (
    ("conflicts", None), ("after-conflicts", None),
    ("fails", FAILS), ("after-fails", None),
    ("hangs", HANGS), ("after-hangs", None),
    ("refused", REFUSED), ("after-refused", None),
    ("mismatch", MISMATCH), ("after-mismatch", None),
    ("unavailable", UNAVAILABLE), ("after-unavailable", None),
)  # fmt: skip
BLOCKED_IN_SHADOW = ("conflicts", "fails", "hangs")
BLOCKED_IN_CUTOVER = ("conflicts", "fails", "hangs", "refused", "mismatch", "unavailable")
#: A pre-receive hook in front of ours: a policy of the server's own, and two ways of making
#: ours refuse (shown an update other than the registered one) or give up (its fallback line).
WRAPPER = f"""#!/bin/sh
input=$(cat)
new=$(printf '%s\\n' "$input" | awk '$3 == "refs/heads/main" {{print $2; exit}}')
[ -n "$new" ] || new=none
if git cat-file -e "$new:{REFUSED}" 2>/dev/null; then
  echo "size-policy: refused: {REFUSED} is too big for main" >&2
  echo "size-policy: remove it from the branch and push again" >&2
  exit 1
fi
if git cat-file -e "$new:{UNAVAILABLE}" 2>/dev/null; then
  echo "integrator: service unavailable (deadline exceeded); push refused" >&2
  exit 1
fi
if git cat-file -e "$new:{MISMATCH}" 2>/dev/null; then
  input=$(printf '%s\\n' "$input" | awk '{{print $1, "'"$(git rev-parse "$new^2")"'", $3}}')
fi
printf '%s\\n' "$input" | "$(dirname "$0")/pre-receive.integrator"
"""


def check_command(pids: Path) -> str:
    """Fails on a dirty tree (what a blocked candidate before left behind would show), leaves
    junk and fails on FAILS (a NUL in its output), hangs with a child on HANGS."""
    return (
        'test -z "$(git status --porcelain --ignored)" || '
        "{ echo dirty workspace; git status --porcelain --ignored; exit 9; }; "
        f"if [ -e {FAILS} ]; then echo junk > junk.txt; echo more >> README; mkdir -p build; "
        "echo out > build/out; printf 'ran 3 tests\\n1 failed\\000 (binary noise)\\n'; exit 3; fi; "
        f"if [ -e {HANGS} ]; then echo started the slow part; "
        f"sleep 60 & echo $! >> {pids}; wait; fi"
    )


@dataclass
class Run:
    """What the module's run left for its tests to read."""

    world: WorkerWorld
    ids: dict[str, int]
    command: str
    pids: Path
    main_before_shadow: str
    shadow_refs_unchanged: bool
    cutover_exit: int | None
    events: list[Event] = field(default_factory=list)

    def of(self, type_: str, slug: str) -> list[Event]:
        return [e for e in self.events if e.type == type_ and e.slug == slug]

    def one(self, type_: str, slug: str) -> dict[str, Any]:
        (event,) = self.of(type_, slug)
        return event.fields

    def moves(self, to: str) -> list[Event]:
        return [
            e for e in self.events if e.type == "candidate_status_changed" and e.fields["to"] == to
        ]


def make_ready(world: WorkerWorld, slug: str, branch: str, sha: str) -> int:
    candidate: dict[str, Any] | None = None
    for envelope in (review_approved(slug), branch_pushed(branch, sha),
                     finalize_ready(slug, branch, sha)):  # fmt: skip
        response = world.post("/v1/events", envelope, world.reporter)
        assert response.status_code == 201, response.text
        candidate = response.json().get("candidate") or candidate
    assert candidate is not None and candidate["status"] == "queued", candidate
    return int(candidate["id"])


@pytest.fixture(scope="module", params=BACKENDS)
def module_settings(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """A fresh migrated database for this module's one run, on each backend."""
    root = tmp_path_factory.mktemp(f"blocked-{request.param}")
    if request.param == "sqlite":
        target = root / "integrator.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), target)
        url = f"sqlite:///{target}"
    else:
        url = request.getfixturevalue("postgres_migrated")
        engine: Engine = make_engine(get_settings(database_url=url))
        truncate_all(engine)
        engine.dispose()
    yield get_settings(database_url=url, mirror_dir=str(root / "mirrors"))


@pytest.fixture(scope="module")
def run(module_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("world")
    world = WorkerWorld(module_settings, root, TokenMaker(module_settings)).start()
    try:
        yield _run(world, root)
    finally:
        world.close()


def _run(world: WorkerWorld, root: Path) -> Run:
    work = world.canonical.work
    main, theirs = conflicting_sides(work, "feat/conflicts")
    git("push", "-q", "origin", "main", "feat/conflicts", cwd=work)
    world.guard()
    hooks = world.canonical.bare / "hooks"
    (hooks / "pre-receive").rename(hooks / "pre-receive.integrator")
    (hooks / "pre-receive").write_text(WRAPPER)
    (hooks / "pre-receive").chmod(0o755)
    ids = {"conflicts": make_ready(world, "conflicts", "feat/conflicts", theirs)}
    for slug, marker in PLAN[1:]:
        ids[slug] = world.ready(slug, path=marker or f"{slug}.txt", content=f"{slug}\n")
    pids = root / "check-children.pid"
    command = check_command(pids)
    args = ("--check", command, "--check-timeout", TIMEOUT)

    before = refs_of(world.canonical.bare)
    shadow = world.run_worker("--once", *args, timeout=120)
    assert shadow.returncode == 0, shadow.stderr
    unchanged = refs_of(world.canonical.bare) == before

    world.cutover()
    worker = world.start_worker(*args, "--poll-interval", "30", log_name="cutover.log")
    try:
        final = {"integrated", "blocked"}
        wait_for(
            lambda: all(world.candidate(i)["status"] in final for i in ids.values()),
            timeout=180,
            what="every candidate integrated or blocked",
        )
        worker.send_signal(signal.SIGTERM)
        exit_code = worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    types = ("would_block", "would_integrate", "integration_blocked", "integration_completed")
    found = world.events(*types, "candidate_status_changed")
    return Run(world, ids, command, pids, main, unchanged, exit_code, found)


def assert_conflict_evidence(fields: dict[str, Any]) -> None:
    paths = [e["path"] for e in fields["conflict_evidence"]]
    expected = [p.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                for p in CONFLICTS]  # fmt: skip
    assert paths == expected  # every path, once, exactly as git names it (bytes escaped)
    assert {e["kind"] for e in fields["conflict_evidence"]} == {"conflict"}
    summary, *per_path = fields["diagnostics"]
    assert f"in {len(CONFLICTS)} file(s):" in summary and "'sp ace.txt'" in summary
    kinds = {line.split(": ", 1)[0]: line.split(": ", 1)[1].split(" conflict")[0]
             for line in per_path}  # fmt: skip
    assert kinds == dict(zip(expected, CONFLICTS.values(), strict=True))
    machine_readable = {e["path"]: e.get("conflict") for e in fields["conflict_evidence"]}
    assert machine_readable == kinds  # the kind, also as data
    (renamed,) = [line for line in per_path if line.startswith("renamed-on-branch.txt:")]
    assert renamed.endswith(
        "renamed-on-branch.txt.orig renamed to renamed-on-branch.txt in feat/conflicts, but "
        "deleted in main."
    )
    assert fields["next_action"].startswith("merge main into feat/conflicts, resolve blob.bin, ")
    assert fields["next_action"].endswith(
        "push the branch, then run `integrator submit --slug conflicts --branch feat/conflicts`"
    )


def test_every_blocked_candidate_is_blocked_and_every_clean_one_after_it_integrates(
    run: Run,
) -> None:
    """The queue never wedges: each clean candidate after a blocked one lands, in order."""
    statuses = {slug: run.world.candidate(i)["status"] for slug, i in run.ids.items()}
    assert statuses == {
        slug: "blocked" if slug in BLOCKED_IN_CUTOVER else "integrated" for slug in run.ids
    }
    assert run.cutover_exit == 0, (run.world.tmp_path / "cutover.log").read_text()
    landed = [e.slug for e in run.events if e.type == "integration_completed"]
    assert landed == [slug for slug, _ in PLAN if slug.startswith("after-")]


def test_a_conflict_names_every_conflicting_path_and_the_kind_of_each(run: Run) -> None:
    """Content, binary, modify/delete, rename/delete, rename/rename, a space, non-ASCII and a
    non-UTF-8 name; the next action is the merge to make and the command to resubmit."""
    fields = run.one("integration_blocked", "conflicts")
    assert_conflict_evidence(fields)
    assert datetime.fromisoformat(fields["blocked_at"]).utcoffset() is not None
    assert fields["attempt"]


def test_a_failed_check_records_its_command_exit_code_and_output_tail(run: Run) -> None:
    """The NUL in its output is stored escaped; the author fixes the branch and resubmits."""
    fields = run.one("integration_blocked", "fails")
    assert fields["conflict_evidence"] == [
        {
            "kind": "check",
            "command": run.command,
            "exit_code": 3,
            "output_tail": "ran 3 tests\n1 failed\\0 (binary noise)\n",
        }
    ]
    assert "failed with exit code 3" in fields["diagnostics"][0]
    assert fields["next_action"].endswith(
        "fix what fails, push the branch, then run `integrator submit --slug fails --branch "
        "feat/fails`"
    )


def test_a_timed_out_check_is_killed_with_its_children_and_says_to_resume(run: Run) -> None:
    """No exit code (it was killed), its timeout, the tail; what it started is gone too."""
    fields = run.one("integration_blocked", "hangs")
    (evidence,) = fields["conflict_evidence"]
    assert set(evidence) == {"kind", "command", "output_tail"}
    assert evidence["output_tail"].startswith("started the slow part\n")
    assert f"killed after its {TIMEOUT}s timeout" in evidence["output_tail"]
    assert f"timed out: it did not finish within its {TIMEOUT}s timeout" in fields["diagnostics"][0]
    assert fields["next_action"].endswith(
        "then run `integrator resume hangs` to test the same sha again in its original turn"
    )
    children = [int(pid) for pid in run.pids.read_text().split()]
    assert len(children) == 2  # one hang in shadow, one in cutover
    assert all(process_gone(pid) for pid in children)


def test_a_push_refused_by_a_server_hook_records_its_remote_lines(run: Run) -> None:
    """The refusal and every `remote:` line; the branch is to fix, then resubmitted."""
    fields = run.one("integration_blocked", "refused")
    assert fields["conflict_evidence"] == [
        {
            "kind": "push",
            "refusal": f"size-policy: refused: {REFUSED} is too big for main",
            "output_tail": f"size-policy: refused: {REFUSED} is too big for main\n"
            "size-policy: remove it from the branch and push again",
        }
    ]
    assert fields["next_action"] == (
        "fix what the refusal names on feat/refused, push the branch, then run "
        "`integrator submit --slug refused --branch feat/refused`"
    )


def test_a_push_refused_by_the_integrators_hook_says_to_resume_after_the_server_is_fixed(
    run: Run,
) -> None:
    """Our hook's own words (`integrator: refused main: …`); not the change's fault."""
    fields = run.one("integration_blocked", "mismatch")
    (evidence,) = fields["conflict_evidence"]
    assert evidence["kind"] == "push"
    assert evidence["refusal"].startswith("integrator: refused main: ")
    assert evidence["refusal"] in evidence["output_tail"].splitlines()
    assert "the change is not at fault" in fields["diagnostics"][1]
    assert "then run `integrator resume mismatch`" in fields["next_action"]


def test_a_push_that_kept_failing_is_blocked_with_the_last_failure_after_its_retries(
    run: Run,
) -> None:
    """Four registered tries, each failed; the last one's words are the evidence."""
    fields = run.one("integration_blocked", "unavailable")
    (evidence,) = fields["conflict_evidence"]
    assert evidence["refusal"].startswith("the hook decided without the service: integrator: ")
    assert "kept failing (4 tries)" in fields["diagnostics"][0]
    assert "then run `integrator resume unavailable`" in fields["next_action"]
    tries = [r for r in run.world.registrations() if r.candidate_id == run.ids["unavailable"]]
    assert [r.status for r in tries] == ["failed"] * 4


def test_no_partial_merge_of_a_blocked_candidate_ever_reaches_main(run: Run) -> None:
    """main's first parents are exactly the clean candidates' merges; no blocked sha and none
    of the conflicting branch's clean changes are on main."""
    bare = run.world.canonical.bare
    first_parents = git("rev-list", "--first-parent", f"{run.main_before_shadow}..main",
                        cwd=bare).split()  # fmt: skip
    assert len(first_parents) == 6
    on_main = set(git("rev-list", "main", cwd=bare).split())
    for slug in BLOCKED_IN_CUTOVER:
        assert run.world.candidate(run.ids[slug])["sha"] not in on_main, slug
    assert git("show", "main:clean.txt", cwd=bare) == "base"


def test_the_worker_takes_the_next_candidate_at_once_after_a_block(run: Run) -> None:
    """From each block to the next hand-out: well under the worker's 30 s poll interval."""
    blocked = {e.fields["candidate_id"]: e.recorded_at for e in run.moves("blocked")}
    started = sorted((e.recorded_at, e.fields["candidate_id"]) for e in run.moves("in_progress"))
    order = [run.ids[slug] for slug, _ in PLAN]
    for candidate in blocked:
        following = order[order.index(candidate) + 1]
        handed = max(at for at, c in started if c == following)
        assert 0 <= (handed - blocked[candidate]).total_seconds() < 5


def test_the_workspace_is_left_clean_no_merge_in_progress_no_stray_file(run: Run) -> None:
    """The clean candidate after each block passed a check that fails on a dirty tree; the
    clone ends with no merge in progress, no unmerged entry, no untracked or ignored file."""
    clone = run.world.tmp_path / "ws" / "clone"
    assert not (clone / ".git" / "MERGE_HEAD").exists()
    assert git("status", "--porcelain", "--ignored", cwd=clone) == ""
    assert git("ls-files", "--unmerged", cwd=clone) == ""


def test_shadow_records_the_same_evidence_as_would_block_and_blocks_nothing(run: Run) -> None:
    """Same evidence and next action as the real block later; refs untouched; the pushes a
    hook would refuse cannot be predicted without pushing (would_integrate)."""
    assert run.shadow_refs_unchanged
    predicted = {e.slug for e in run.events if e.type == "would_block"}
    assert predicted == set(BLOCKED_IN_SHADOW)
    clean = {e.slug for e in run.events if e.type == "would_integrate"}
    assert clean == set(run.ids) - predicted
    last_prediction = max(e.seq for e in run.events if e.type == "would_block")
    assert min(e.seq for e in run.moves("blocked")) > last_prediction  # blocked after cutover
    for slug in BLOCKED_IN_SHADOW:
        shadow, real = run.one("would_block", slug), run.one("integration_blocked", slug)
        assert shadow["conflict_evidence"] == real["conflict_evidence"], slug
        assert shadow["next_action"] == real["next_action"]
    real = run.one("integration_blocked", "conflicts")
    assert_conflict_evidence({**run.one("would_block", "conflicts"),
                              "next_action": real["next_action"]})  # fmt: skip
