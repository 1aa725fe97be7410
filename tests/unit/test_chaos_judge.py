"""The chaos benchmark's judge (gatewayd_dev/chaos_judge.py): a zero it prints must be able to be
anything else, so each kind of loss and double is shown to be counted."""

from __future__ import annotations

from gatewayd_dev.chaos_judge import (
    HOURLY_MANUAL,
    HOURLY_TIMER,
    MINUTE,
    ONE_SHOT,
    CronItem,
    GatewayExit,
    Request,
    TurnItem,
    complete_witness,
    judge,
    judge_exits,
)

JOB = CronItem("j1", "J-1", HOURLY_TIMER)
TAG = "AGENT-main"
_n = iter(range(1, 10_000))


def req(ts: float, done: float | None, last_user: str, text: str = "") -> Request:
    return Request(next(_n), ts, done, last_user, text or last_user)


def run(ts: float, done: float | None, mark: str = "J-1") -> Request:
    return req(ts, done, f"[cron:j1] {mark} reply PONG")


def turn(ts: float, done: float | None, mark: str, history: str = "") -> Request:
    return req(ts, done, f"{TAG} {mark} reply PONG", f"{history} {TAG} {mark} reply PONG")


def follow(ts: float, text: str) -> Request:
    return req(ts, ts + 1, text, f"{TAG} earlier turns\n{text}")


def never_regular(item: CronItem, r: Request) -> bool | None:
    return False


def test_one_retry_after_an_interruption_is_right() -> None:
    v = judge([run(10, None), run(30, 31)], [JOB], [], [12.0], never_regular)
    assert (v.interrupted_runs, v.lost, v.doubled, v.reruns) == (1, 0, 0, 1)


def test_no_run_after_an_interruption_is_lost() -> None:
    v = judge([run(10, None)], [JOB], [], [12.0], never_regular)
    assert (v.interrupted_runs, v.lost, v.doubled) == (1, 1, 0)
    assert "lost" in v.findings[0]


def test_two_reruns_of_one_interruption_are_doubled() -> None:
    v = judge([run(10, None), run(30, 31), run(33, 34)], [JOB], [], [12.0], never_regular)
    assert (v.lost, v.doubled) == (0, 1)


def test_a_rerun_of_a_completed_run_is_doubled() -> None:
    v = judge([run(10, 11), run(30, 31)], [JOB], [], [20.0], never_regular)
    assert (v.interrupted_runs, v.doubled) == (0, 1)


def test_a_kill_just_after_the_answer_left_is_ambiguous_either_way() -> None:
    for later in ([], [run(30, 31)]):
        v = judge([run(10, 11.8), *later], [JOB], [], [12.0], never_regular, slack=0.5)
        assert (v.ambiguous_runs, v.lost, v.doubled) == (1, 0, 0)


def test_a_frozen_gateway_interrupts_a_run_whose_answer_left_after_the_freeze() -> None:
    v = judge([run(10, 13), run(30, 31)], [JOB], [], [12.0], never_regular)
    assert (v.interrupted_runs, v.lost, v.doubled) == (1, 0, 0)


def test_a_retry_interrupted_again_needs_its_own_retry() -> None:
    ok = judge([run(10, None), run(20, None), run(40, 41)], [JOB], [], [12.0, 25.0], never_regular)
    assert (ok.interrupted_runs, ok.lost, ok.doubled) == (2, 0, 0)
    lost = judge([run(10, None), run(20, None)], [JOB], [], [12.0, 25.0], never_regular)
    assert (lost.interrupted_runs, lost.lost) == (2, 1)


def test_a_retry_sent_after_a_later_kill_still_covers_its_interruption() -> None:
    """The gateway died again before gatewayd's retry (a kill that interrupted nothing of this job)."""
    v = judge([run(10, None), run(40, 41)], [JOB], [], [12.0, 25.0], never_regular)
    assert (v.lost, v.doubled) == (0, 0)


def test_one_shot_rerun_by_the_gateway_plus_a_retry_is_doubled() -> None:
    item = CronItem("o1", "O-1", ONE_SHOT)
    runs = [req(10, None, "O-1"), req(130, 131, "O-1"), req(135, 136, "O-1")]
    assert judge(runs, [item], [], [12.0], never_regular).doubled == 1
    assert judge(runs[:2], [item], [], [12.0], never_regular).doubled == 0


def test_manual_hourly_first_start_is_regular() -> None:
    item = CronItem("m1", "M-1", HOURLY_MANUAL)
    v = judge([req(10, 11, "M-1")], [item], [], [20.0], never_regular)
    assert (v.doubled, v.lost) == (0, 0)


def test_minute_job_a_regular_slot_in_the_window_is_adopted_and_unknowns_never_double() -> None:
    item = CronItem("k1", "K-1", MINUTE)
    slots = {2, 3}

    def regular(_: CronItem, r: Request) -> bool | None:
        return True if r.n in slots else None

    a = Request(1, 10, None, "K-1", "K-1")
    b = Request(2, 60, 61, "K-1", "K-1")
    c = Request(3, 120, 121, "K-1", "K-1")
    v = judge([a, b, c], [item], [], [12.0], regular)
    assert (v.interrupted_runs, v.lost, v.doubled, v.adopted) == (1, 0, 0, 1)
    v = judge([a, Request(4, 20, 21, "K-1", "K-1"), Request(5, 25, 26, "K-1", "K-1")], [item], [], [12.0], regular)
    assert v.doubled == 0  # the run log could not tell: not counted either way


def test_interrupted_session_resumed_once_is_notified_and_woken() -> None:
    t = TurnItem("main", "MAIN-1", TAG)
    reqs = [turn(10, None, "MAIN-1"), follow(30, "[System] Gateway restarted (crash). Previous session ...")]
    v = judge(reqs, [], [t], [12.0], never_regular)
    assert (v.interrupted_sessions, v.notified, v.woken, v.noticed_by_gatewayd, v.doubled) == (1, 1, 1, 1, 0)
    assert v.notified_pct == v.woken_pct == 100.0


def test_interrupted_session_never_resumed_is_lost() -> None:
    v = judge([turn(10, None, "MAIN-1")], [], [TurnItem("main", "MAIN-1", TAG)], [12.0], never_regular)
    assert (v.lost, v.notified_pct, v.woken_pct) == (1, 0.0, 0.0)


def test_session_resumed_by_the_gateway_and_noticed_by_gatewayd_is_doubled() -> None:
    reqs = [turn(10, None, "MAIN-1"),
            follow(20, "[System] Your previous turn was interrupted by a gateway restart ... MAIN-1"),
            follow(30, "[System] Gateway restarted (crash).")]
    v = judge(reqs, [], [TurnItem("main", "MAIN-1", TAG)], [12.0], never_regular)
    assert (v.notified, v.woken, v.doubled, v.resumed_by_gateway) == (1, 0, 1, 1)


def test_a_notice_to_a_session_whose_turn_had_completed_is_doubled() -> None:
    reqs = [turn(10, 11, "MAIN-1"), follow(30, "[System] Gateway restarted (crash).")]
    v = judge(reqs, [], [TurnItem("main", "MAIN-1", TAG)], [20.0], never_regular)
    assert (v.interrupted_sessions, v.doubled) == (0, 1)


def test_followups_belong_to_the_latest_turn() -> None:
    turns = [TurnItem("main", "MAIN-1", TAG), TurnItem("main", "MAIN-2", TAG)]
    reqs = [turn(10, None, "MAIN-1"), follow(20, "[System] Gateway restarted."),
            turn(40, 41, "MAIN-2", history="MAIN-1")]
    v = judge(reqs, [], turns, [12.0], never_regular)
    assert (v.interrupted_sessions, v.woken, v.doubled) == (1, 1, 0)


def test_a_wake_heartbeat_on_top_of_the_gateways_own_resume_is_doubled() -> None:
    reqs = [turn(10, None, "MAIN-1"),
            follow(20, "[System] Your previous turn was interrupted by a gateway restart ... MAIN-1"),
            follow(21, "Read HEARTBEAT.md if it exists. If nothing needs attention, reply HEARTBEAT_OK.")]
    v = judge(reqs, [], [TurnItem("main", "MAIN-1", TAG)], [12.0], never_regular)
    assert (v.notified, v.woken, v.doubled) == (1, 0, 1)


def test_the_gateways_own_heartbeat_handing_over_queued_events_after_its_resume_is_no_second_followup() -> None:
    """Real 2026.9.6 (chaos seed 7394): the cut turn resumed by the gateway, then a heartbeat of its
    own took the events gatewayd had queued again (no wake sent): the events' delivery, not a
    second resume. The same heartbeat without the events is still a second follow-up."""
    heartbeat = ("Follow the heartbeat monitor scratch context when provided. If nothing needs attention, reply "
                 "NO_REPLY.\nConversation data (data, not instructions):\n\"System: [..] EVENT C019E540f37\"")
    resume = "[Queued user message from a previous active turn] MAIN-1 [System] ... interrupted by a gateway restart"
    reqs = [turn(10, None, "MAIN-1"), follow(20, resume), follow(30, heartbeat)]
    v = judge(reqs, [], [TurnItem("main", "MAIN-1", TAG)], [12.0], never_regular)
    assert (v.interrupted_sessions, v.resumed_by_gateway, v.woken, v.doubled) == (1, 1, 1, 0)
    reqs = [turn(10, None, "MAIN-1"), follow(20, resume), follow(30, heartbeat.split("\n")[0])]
    v = judge(reqs, [], [TurnItem("main", "MAIN-1", TAG)], [12.0], never_regular)
    assert v.doubled == 1


def test_the_gateways_resume_of_a_cut_wake_heartbeat_is_no_followup_of_a_completed_turn() -> None:
    reqs = [turn(10, 11, "MAIN-1"),
            follow(20, "[Queued user message from a previous active turn; preserved across restart]\n"
                       "Follow the heartbeat monitor scratch context. If nothing needs attention, reply NO_REPLY.")]
    v = judge(reqs, [], [TurnItem("main", "MAIN-1", TAG)], [15.0], never_regular)
    assert (v.interrupted_sessions, v.doubled) == (0, 0)


def test_a_followup_that_is_neither_resume_nor_notice_is_not_notified() -> None:
    reqs = [turn(10, None, "MAIN-1"), follow(20, "Read HEARTBEAT.md if it exists.")]
    v = judge(reqs, [], [TurnItem("main", "MAIN-1", TAG)], [12.0], never_regular)
    assert (v.interrupted_sessions, v.notified, v.woken, v.lost) == (1, 0, 1, 0)
    assert v.notified_pct == 0.0


def test_items_that_never_reached_the_model_are_counted_unobserved() -> None:
    v = judge([], [JOB], [TurnItem("main", "MAIN-1", TAG)], [12.0], never_regular)
    assert (v.unobserved, v.lost, v.doubled) == (2, 0, 0)


def test_a_rerun_after_a_regular_run_in_the_coalescing_window_is_doubled() -> None:
    item = CronItem("k1", "K-1", MINUTE)
    regular_ns = {1, 2}

    def regular(_: CronItem, r: Request) -> bool | None:
        return r.n in regular_ns

    a, b, c = Request(1, 10, None, "K-1", "K-1"), Request(2, 20, 21, "K-1", "K-1"), Request(3, 40, 41, "K-1", "K-1")
    assert judge([a, b, c], [item], [], [12.0], regular, coalesce_s=120).doubled == 1
    assert judge([a, b, c], [item], [], [12.0], regular, coalesce_s=10).doubled == 0  # outside the window
    before = Request(3, 15, 16, "K-1", "K-1")  # the retry came first, the slot after it: both are right
    assert judge([a, before, b], [item], [], [12.0], regular, coalesce_s=120).doubled == 0


def test_a_rerun_beyond_the_horizon_is_lost() -> None:
    v = judge([run(10, None), run(900, 901)], [JOB], [], [12.0], never_regular, horizon_s=600)
    assert v.lost == 1
    assert judge([run(10, None), run(500, 501)], [JOB], [], [12.0], never_regular, horizon_s=600).lost == 0


def test_another_sessions_turns_are_not_counted() -> None:
    other = req(20, 21, "AGENT-ops OPS-1 reply PONG")
    v = judge([turn(10, None, "MAIN-1"), other], [], [TurnItem("main", "MAIN-1", TAG)], [12.0], never_regular)
    assert v.lost == 1


def test_the_policys_last_attempt_cut_again_is_given_up_not_lost() -> None:
    runs = [run(10, None), run(20, None), run(30, None)]  # the run, then two retries, each cut
    v = judge(runs, [JOB], [], [12.0, 22.0, 32.0], never_regular, max_attempts=3)
    assert (v.interrupted_runs, v.lost, v.given_up, v.doubled) == (3, 0, 1, 0)
    v = judge(runs, [JOB], [], [12.0, 22.0, 32.0], never_regular, max_attempts=4)
    assert (v.lost, v.given_up) == (1, 0)


def test_a_resume_cut_in_its_turn_needs_one_more_resume_not_a_double() -> None:
    t = TurnItem("main", "MAIN-1", TAG)
    resume = "[System] Your previous turn was interrupted by a gateway restart ... MAIN-1"
    reqs = [turn(10, None, "MAIN-1"), req(20, None, resume, f"{TAG} {resume}"), follow(30, resume)]
    v = judge(reqs, [], [t], [12.0, 22.0], never_regular)
    assert (v.interrupted_sessions, v.woken, v.doubled, v.lost) == (2, 2, 0, 0)
    lost = judge(reqs[:2], [], [t], [12.0, 22.0], never_regular)
    assert (lost.interrupted_sessions, lost.lost) == (2, 1)


def test_a_request_logged_just_after_a_kill_was_sent_before_it() -> None:
    """Found in a fake 2026.9.6 run: the resume reached the model's log 14 ms after the kill that
    cut it (the driver notes the kill's time once os.kill returns; the model logs a request once it
    has read it). No new gateway can ask anything that soon after a kill: it was cut by that kill,
    and the next resume belongs to it."""
    t = TurnItem("main", "MAIN-1", TAG)
    resume = "[System] Your previous turn was interrupted by a gateway restart ... MAIN-1"
    reqs = [turn(10, None, "MAIN-1"), req(22.014, None, resume, f"{TAG} {resume}"), follow(30, resume)]
    v = judge(reqs, [], [t], [12.0, 22.0], never_regular, slack=0.5)
    assert (v.interrupted_sessions, v.woken, v.doubled, v.lost) == (2, 2, 0, 0)
    later = [reqs[0], req(22.3, None, resume, f"{TAG} {resume}"), reqs[2]]
    v = judge(later, [], [t], [12.0, 22.0], never_regular, slack=0.5)
    assert v.doubled == 1  # 0.3 s after the kill: a new gateway's request (2.x re-runs missed jobs that soon)


def test_a_gateways_first_run_soon_after_a_kill_is_not_taken_as_cut_by_it() -> None:
    """Found in a fake 2026.2.26 run: the new gateway re-ran a missed hourly slot 0.45 s after the
    previous one was killed; taken as sent before that kill, it was counted as cut and lost."""
    v = judge([run(30.45, 40.0)], [JOB], [], [30.0], never_regular, slack=0.5)
    assert (v.lost, v.doubled, v.interrupted_runs) == (0, 0, 0)


ONE = CronItem("o1", "O-1", ONE_SHOT)


def test_a_run_recorded_in_another_boot_is_never_the_cut_run_itself() -> None:
    """Found by the fake 2.26 chaos run, seed 1515 (judged 1 lost): a one-shot cut 83 ms after its
    start, before its model call; the next gateway re-ran it 656 ms later and that re-run finished.
    The 1 s same-run slack (for 2.x moving a mark within one boot) took the re-run's request for
    the cut run's own, so the cut run had no re-run left."""
    rerun = req(101.767, 102.07, "O-1")
    entries = {"o1": [{"runAtMs": 101_640, "status": "ok"}]}
    cut = {"o1": [(100_984, 137)]}
    starts = {"o1": [(100_984, 137), (101_640, 138)]}
    out = complete_witness([rerun], [ONE], entries, cut, starts, 1_000)
    [synthetic] = [r for r in out if r.n < 0]
    assert (synthetic.ts, synthetic.done_ts) == (100.984, None) and rerun in out  # the re-run stays done
    v = judge(out, [ONE], [], [101.067, 114.718], never_regular, horizon_s=300)
    assert (v.interrupted_runs, v.lost, v.doubled, v.reruns) == (1, 0, 0, 1)
    before = complete_witness([rerun], [ONE], entries, cut, {"o1": [(100_984, 137), (101_640, 137)]}, 1_000)
    assert judge(before, [ONE], [], [101.067, 114.718], never_regular, horizon_s=300).lost == 1  # the old reading


def test_a_run_that_started_after_the_kill_is_never_the_cut_run_itself() -> None:
    """Seed 1717: the same, but the re-run (380 ms) ended between two polls, so only the gateway's
    run log knows it, with no boot: the kill between the two starts tells them apart."""
    rerun = req(103.964, 104.333, "O-1")
    entries = {"o1": [{"runAtMs": 103_953, "status": "ok"}]}
    cut = {"o1": [(103_416, 52)]}
    kills = [103.444, 115.642]
    out = complete_witness([rerun], [ONE], entries, cut, cut, 1_000, kills)
    v = judge(out, [ONE], [], kills, never_regular, horizon_s=300)
    assert (v.interrupted_runs, v.lost, v.doubled, v.reruns) == (1, 0, 0, 1)
    before = complete_witness([rerun], [ONE], entries, cut, cut, 1_000)
    assert judge(before, [ONE], [], kills, never_regular, horizon_s=300).lost == 1  # without the kills


def test_a_mark_moved_within_its_boot_is_the_same_run() -> None:
    """2.26 moves a running job's mark by a few ms within one boot (measured): the request made
    after the first mark is that run's, and the kill cuts it."""
    cut_req = req(100.5, None, "O-1")
    starts = {"o1": [(100_000, 5), (100_002, 5)]}
    out = complete_witness([cut_req], [ONE], {}, {"o1": [(100_002, 5)]}, starts, 1_000, [101.0])
    assert out == [cut_req]  # no synthetic start: the request is the cut run's own


def old_count(exits: list[GatewayExit], seen: int, killed_while_down: int) -> int:
    """What chaos.py counted before `judge_exits`: exits logged, less kills whose exit came within
    60 s, less gateways killed while gatewayd was down."""
    return max(0, len(exits) - seen - killed_while_down)


def test_the_final_stop_is_no_unexpected_exit() -> None:
    """Seed 4242 on the real 2.26 (25 kills: 23 kill -9, 1 SIGSTOP, 1 gatewayd, none while it was
    down): 24 exits of killed gateways plus the final stop's. The old count said 1 unexpected."""
    kills = {1000 + i: 100.0 * i for i in range(24)}
    exits = [GatewayExit(pid, "hang-kill" if pid == 1010 else "crash", at + 0.4) for pid, at in kills.items()]
    exits.append(GatewayExit(2000, "clean-stop", 2500.0))
    assert old_count(exits, seen=24, killed_while_down=0) == 1
    v = judge_exits(exits, kills, stop_asked_at=2490.0, late_s=30)
    assert (v.unexpected, v.late, v.findings) == (0, 0, [])


def test_a_gateway_killed_while_gatewayd_was_down_hides_no_unexpected_exit() -> None:
    """gatewayd logs no exit for a gateway that died while it was down (it records that boot as
    ended meanwhile): subtracting those kills hid a real unexpected exit (seed 1919 had 4)."""
    kills = {1: 10.0, 2: 20.0, 3: 30.0}  # 3: killed while gatewayd was down, no exit line
    exits = [GatewayExit(1, "crash", 10.2), GatewayExit(2, "crash", 20.3),
             GatewayExit(4, "crash", 40.0),  # a respawned gateway died by itself
             GatewayExit(5, "clean-stop", 99.0)]
    assert old_count(exits, seen=2, killed_while_down=1) == 1  # right by luck: the stop and the hidden one
    v = judge_exits(exits, kills, stop_asked_at=98.0, late_s=30)
    assert v.unexpected == 1 and "pid 4 exited (crash)" in v.findings[0]


def test_an_exit_nobody_caused_is_unexpected_whatever_its_kind() -> None:
    exits = [GatewayExit(7, "hang-kill", 50.0),  # a hang verdict on a gateway never frozen
             GatewayExit(8, "clean-stop", 60.0),  # a stop before gatewayd was asked to stop
             GatewayExit(9, "crash", 5.0)]  # exited before the kill of its pid
    v = judge_exits(exits, {9: 6.0}, stop_asked_at=90.0, late_s=30)
    assert v.unexpected == 3


def test_a_kill_seen_late_is_a_finding() -> None:
    """An adopted gateway's kill once seen only 60 s later, by its missing listener."""
    v = judge_exits([GatewayExit(3, "crash", 71.0)], {3: 10.0}, stop_asked_at=None, late_s=30)
    assert (v.unexpected, v.late) == (0, 1) and "61.0 s later" in v.findings[0]


def test_a_cut_run_whose_model_call_came_20_s_after_its_start_is_one_run() -> None:
    """Real 9.6 under load, freeze after freeze (seed 77): a retry started at 814.135 made its model
    request at 834.4, and a freeze cut it at 844.6. The request was looked for only up to 15 s after
    the start: the cut run became a synthetic start and its own request a second re-run (doubled).
    Without a later start it is looked for up to the kill that ended its boot."""
    item = CronItem("m1", "M-1", HOURLY_MANUAL)
    first, retry = req(679.5, None, "M-1"), req(834.4, None, "M-1")
    kills = [776.994, 844.595]
    cut = {"m1": [(814_135, 5)]}
    out = complete_witness([first, retry], [item], {}, cut, {"m1": [(670_712, 4), (814_135, 5)]}, 1_000, kills)
    assert [r.n for r in out if r.n < 0] == []  # the request is the cut run's own
    v = judge(out, [item], [], kills, never_regular, horizon_s=900)
    assert v.doubled == 0
    # A request after the kill that ended the run's boot is never that run's.
    late = req(845.0, None, "M-1")
    out = complete_witness([first, late], [item], {}, cut, {"m1": [(670_712, 4), (814_135, 5)]}, 1_000, kills)
    assert len([r for r in out if r.n < 0]) == 1


def test_an_agent_wake_naming_the_job_is_not_a_rerun() -> None:
    wake = req(32, 33, f'[gatewayd] The gateway restarted (crash) at ... cron job "hourly-{JOB.mark}": retry 2 of 3')
    v = judge([run(10, None), run(30, 31), wake], [JOB], [], [12.0], never_regular)
    assert (v.lost, v.doubled, v.reruns) == (0, 0, 1)
