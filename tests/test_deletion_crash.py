"""kill -9 at any point of an apply, then restart: nothing is forgotten and no step runs twice with effect.

``smartplexd apply`` runs in a subprocess with the test hook ``SMARTPLEXD_CRASH_AFTER_STEP=N``: the process
exits with ``os._exit(137)`` (no cleanup, like SIGKILL) right after the side effect of its N-th step and
before that step is marked done (N=0: right after the intents are written). The daemon's start-up call,
:func:`smartplexd.deletion.resume_unfinished`, then finishes the work. For every N the simulated services
and the database end exactly as after an uninterrupted run (attempt counts and times aside), and the audit
log verifies.
"""

from __future__ import annotations

import pytest
from deletion_world import World, build_world

from smartplexd import audit, deletion
from smartplexd.errors import Refused

TOTAL_STEPS = 4 + 4 + 2 + 3  # approved (overseerr, radarr, plex, local), pending (same), plex-only, show


def _final_state(world: World) -> dict:
    return {"sims": world.sim_state(), "db": world.db_state()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The state after one uninterrupted ``apply`` of the checklist plan."""
    world = build_world(tmp_path_factory.mktemp("reference"))
    try:
        plan_id = world.make_plan()
        proc = world.cli("apply", str(plan_id), "--confirm", "DELETE")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        state = _final_state(world)
    finally:
        world.close()
    assert {d["status"] for d in state["db"]["deletions"]} == {"done"}
    assert len(state["db"]["steps"]) == TOTAL_STEPS
    return state


@pytest.mark.slow
@pytest.mark.parametrize("crash_after", range(TOTAL_STEPS + 1))
def test_crash_then_resume_equals_an_uninterrupted_run(tmp_path, reference, crash_after: int) -> None:
    world = build_world(tmp_path)
    try:
        plan_id = world.make_plan()
        proc = world.cli(
            "apply", str(plan_id), "--confirm", "DELETE", env={"SMARTPLEXD_CRASH_AFTER_STEP": str(crash_after)}
        )
        assert proc.returncode == 137, proc.stdout + proc.stderr
        with world.store() as store:
            if crash_after == 0:
                # Only intents: nothing happened anywhere yet, and the plan cannot be applied again.
                assert {r["status"] for r in store.query("SELECT status FROM deletion_events")} == {"pending"}
                assert world.sim_state()["plex_deleted"] == []
            else:
                running = store.query("SELECT plugin FROM deletion_steps WHERE status = 'running'")
                assert len(running) == 1  # the step whose side effect happened but was not recorded
            with pytest.raises(Refused, match="not a draft"):
                deletion.apply_plan(world.config, store, plan_id, actor="cli:again", confirm="DELETE")

            result = deletion.resume_unfinished(world.config, store)
            assert result.exit_code == 0, result
            assert audit.verify(store).ok
            assert audit.entries(store, action="deletion.resume")
            # The step that was interrupted ran once more; every other step exactly once.
            attempts = [r["attempts"] for r in store.query("SELECT attempts FROM deletion_steps ORDER BY id")]
            assert sum(attempts) == TOTAL_STEPS + (1 if crash_after else 0)
        assert _final_state(world) == reference
    finally:
        world.close()
