"""Motion detection on synthetic frames: one visitor -> one event; masks, zones and flicker -> none."""

from __future__ import annotations

import math

import av
import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.events.motion import (
    _LIMITED_TO_FULL,
    MotionConfig,
    MotionDetector,
    MotionHysteresis,
    Transition,
    frame_gray,
    polygon_mask,
)
from tests.events.scenes import H, W, background, render, walk

RIGHT_HALF = ((0.45, 0.0), (1.0, 0.0), (1.0, 1.0), (0.45, 1.0))
LEFT_QUARTER = ((0.0, 0.0), (0.25, 0.0), (0.25, 1.0), (0.0, 1.0))


def run(config: MotionConfig, frames: object) -> tuple[list[Transition], list[float]]:
    detector, hysteresis = MotionDetector(config), MotionHysteresis(config)
    transitions, scores = [], []
    for t, frame, _visible in frames:  # type: ignore[attr-defined]
        score = detector.score(frame)
        scores.append(score)
        tr = hysteresis.update(t, score, frame)
        if tr is not None:
            transitions.append(tr)
    return transitions, scores


def test_visitor_walking_through_is_exactly_one_event() -> None:
    config = MotionConfig()
    frames = list(walk())
    transitions, scores = run(config, frames)
    assert [tr.kind for tr in transitions] == ["start", "end"]
    event = transitions[0].event
    assert transitions[1].event is event
    visible = [t for t, _f, v in frames if v]
    # Starts within the first frames of the walk and ends at the last motion seen (ghosts fade fast).
    assert visible[0] <= event.start <= visible[0] + 1.0
    assert event.end is not None and visible[-1] - 0.5 <= event.end <= visible[-1] + 1.0
    assert event.score == pytest.approx(max(scores))
    assert event.score >= config.min_area
    assert event.best_frame is not None and event.best_frame.shape == (H, W, 3)


def test_visitor_pausing_at_the_door_is_still_one_event() -> None:
    # Standing still for 4 s (under end_quiet_s of quiet is needed to end) must not split the event.
    transitions, _ = run(MotionConfig(end_quiet_s=5.0), walk(pause=20))
    assert [tr.kind for tr in transitions] == ["start", "end"]


def test_two_visits_far_apart_are_two_events() -> None:
    frames = list(walk(quiet_after=40))
    t_last = frames[-1][0]
    second = [(t + t_last + 0.2, f, v) for t, f, v in walk(quiet_after=40, seed=7)]
    transitions, _ = run(MotionConfig(), frames + second)
    assert [tr.kind for tr in transitions] == ["start", "end", "start", "end"]


def test_motion_only_inside_a_privacy_mask_is_ignored() -> None:
    config = MotionConfig(masks=(RIGHT_HALF,))
    transitions, scores = run(config, walk(x_from=330, x_to=560))
    assert transitions == []
    assert max(scores) == 0.0
    # Control: the same walk without the mask is an event.
    transitions, _ = run(MotionConfig(), walk(x_from=330, x_to=560))
    assert [tr.kind for tr in transitions] == ["start", "end"]


def test_motion_outside_the_zones_is_ignored() -> None:
    config = MotionConfig(zones=(LEFT_QUARTER,))
    transitions, scores = run(config, walk(x_from=330, x_to=560))
    assert transitions == []
    assert max(scores) == 0.0
    # Control: walking through the zone is an event.
    transitions, _ = run(config, walk(x_from=-80, x_to=200))
    assert [tr.kind for tr in transitions] == ["start", "end"]


def test_lighting_flicker_and_noise_are_not_motion() -> None:
    rng = np.random.default_rng(3)
    bg = background(3)
    frames = []
    for i in range(150):
        # Mains-like flicker and auto exposure: +-12% brightness, heavy sensor noise.
        gain = 1.0 + 0.12 * math.sin(i * 1.3)
        frames.append((i / 5, render(bg, rng, gain=gain, noise=5.0), False))
    config = MotionConfig()
    transitions, scores = run(config, frames)
    assert transitions == []
    assert max(scores) < config.min_area


def test_lights_switching_on_is_not_motion() -> None:
    rng = np.random.default_rng(4)
    bg = background(4)
    frames = [(i / 5, render(bg, rng, gain=1.0 if i < 20 else 1.5), False) for i in range(60)]
    transitions, _ = run(MotionConfig(), frames)
    assert transitions == []


def test_small_movement_below_min_area_is_not_an_event() -> None:
    # A 12x12 px insect: well under 0.5% of the picture.
    transitions, scores = run(MotionConfig(), walk(size=(12, 12), x_from=100, x_to=500))
    assert transitions == []
    assert 0.0 < max(scores) < MotionConfig().min_area


def test_brief_flash_shorter_than_start_frames_is_not_an_event() -> None:
    h = MotionHysteresis(MotionConfig(start_frames=3, end_quiet_s=2.0))
    assert [h.update(t / 5, s) for t, s in enumerate([0, 0.2, 0.2, 0, 0, 0.3, 0])] == [None] * 7


def test_hysteresis_start_and_end_times() -> None:
    cfg = MotionConfig(start_frames=3, end_quiet_s=2.0, min_area=0.01)
    h = MotionHysteresis(cfg)
    out = [h.update(t, s) for t, s in [(0.0, 0.0), (1.0, 0.1), (1.2, 0.3), (1.4, 0.2), (1.6, 0.0)]]
    assert [o.kind if o else None for o in out] == [None, None, None, "start", None]
    assert h.current is not None and h.current.start == 1.0 and h.current.score == 0.3
    assert h.update(3.3, 0.0) is None  # 1.9 s of quiet after the last motion at 1.4
    end = h.update(3.5, 0.0)  # 2.1 s: ends, at the last motion
    assert end is not None and end.kind == "end" and end.event.end == 1.4
    assert h.current is None
    flushed = MotionHysteresis(cfg)
    for t in (0.0, 0.2, 0.4, 0.6):
        flushed.update(t, 0.5)
    tr = flushed.flush()
    assert tr is not None and tr.kind == "end" and tr.event.end == 0.6


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 2.0), st.floats(0.0, 1.0)), max_size=200))
def test_transitions_always_alternate_and_events_are_well_formed(steps: list[tuple[float, float]]) -> None:
    h = MotionHysteresis(MotionConfig(start_frames=2, end_quiet_s=1.0, min_area=0.5))
    t, kinds = 0.0, []
    for dt, score in steps:
        t += dt
        tr = h.update(t, score)
        if tr is not None:
            kinds.append(tr.kind)
            if tr.kind == "end":
                assert tr.event.end is not None and tr.event.start <= tr.event.end <= t
                assert tr.event.score >= 0.5
    end = h.flush()
    if end is not None:
        kinds.append(end.kind)
    assert kinds == ["start", "end"] * (len(kinds) // 2)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 2.0), st.floats(0.0, 1.0)), max_size=120))
def test_frames_offered_only_when_kept_give_the_same_thumbnails(steps: list[tuple[float, float]]) -> None:
    # The runner converts a frame to BGR only when `keeps` says the hysteresis would store it; the
    # events and their best frames must be those of feeding every frame.
    cfg = MotionConfig(start_frames=2, end_quiet_s=1.0, min_area=0.3)
    every, lazy = MotionHysteresis(cfg), MotionHysteresis(cfg)
    t = 0.0
    for i, (dt, score) in enumerate(steps):
        t += dt
        frame = np.full((2, 2, 3), i % 256, np.uint8)
        kept = lazy.keeps(score)
        a, b = every.update(t, score, frame), lazy.update(t, score, frame if kept else None)
        for tr in (a, b):
            if tr is not None and tr.kind == "start":
                assert tr.event.best_frame is not None
        if a is not None or b is not None:
            assert a is not None and b is not None and a.kind == b.kind
            assert a.event.score == b.event.score and a.event.best_time == b.event.best_time
            assert a.event.best_frame is not None and b.event.best_frame is not None
            assert np.array_equal(a.event.best_frame, b.event.best_frame)


def test_luma_plane_grey_matches_bgr_conversion() -> None:
    # The runner reads grey from the decoder's Y plane (limited range stretched to 0..255) instead
    # of converting to BGR and back; pixel_threshold must keep its meaning.
    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 256, (72, 128, 3), dtype=np.uint8)
    bgr = cv2.GaussianBlur(bgr, (9, 9), 0)  # chroma is subsampled: smooth colour like a camera's
    for fmt in ("yuv420p", "yuvj420p"):
        frame = av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format=fmt)
        via_bgr = cv2.cvtColor(frame.to_ndarray(format="bgr24"), cv2.COLOR_BGR2GRAY)
        diff = np.abs(frame_gray(frame).astype(int) - via_bgr.astype(int))
        assert diff.max() <= 3, fmt
        assert diff.mean() < 2.0, fmt  # swscale rounds its BGR; 2 grey levels vs a threshold of 25


def test_resolution_change_rebuilds_masks() -> None:
    detector = MotionDetector(MotionConfig(masks=(RIGHT_HALF,)))
    rng = np.random.default_rng(1)
    detector.score(render(background(), rng))
    small = np.zeros((180, 320, 3), np.uint8)
    assert detector.score(small) == 0.0  # new size: learns a new background, no crash
    assert detector.score(small) == 0.0


def test_polygon_mask_uses_normalised_coordinates() -> None:
    mask = polygon_mask([LEFT_QUARTER], 400, 100)
    assert mask[:, :99].all() and not mask[:, 101:].any()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"zones": (((0.0, 0.0), (1.2, 0.0), (1.0, 1.0)),)},
        {"masks": (((0.0, 0.0), (1.0, 0.0)),)},
        {"min_area": 0.0},
        {"start_frames": 0},
        {"analysis_fps": 100.0},
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="motion\\."):
        MotionConfig(**kwargs)  # type: ignore[arg-type]


def test_object_in_the_first_frame_that_leaves_ends_within_the_post_roll() -> None:
    # Issue 16: the first analysed frame becomes the background, object included; once it left, its
    # "ghost" faded at alpha/8 and kept the event open for about a minute.
    config = MotionConfig()
    post_roll_s = 10.0  # hub/config.py MotionConfig.post_roll_seconds default
    rng = np.random.default_rng(3)
    bg = background(3)
    frames = []
    t, dt = 0.0, 1 / config.analysis_fps
    for _ in range(10):  # 2 s with a box standing in the picture from the first frame
        frames.append((t, render(bg, rng, (300, 100, 90, 200)), True))
        t += dt
    left_at = t
    for _ in range(int(30 / dt)):  # then 30 s of the empty doorstep
        frames.append((t, render(bg, rng), False))
        t += dt
    transitions, _ = run(config, frames)
    kinds = [tr.kind for tr in transitions]
    assert kinds == ["start", "end"], kinds
    event = transitions[0].event
    assert event.end is not None
    # The event (its last motion) ends within the post-roll of the object leaving; and the end is
    # reported end_quiet_s later, also within the post-roll... of that end.
    assert event.end - left_at <= post_roll_s - config.end_quiet_s, (event.end, left_at)


def test_limited_range_luma_scores_like_the_stretched_grey() -> None:
    # The runner hands the detector the decoder's video-range Y plane (16..235) and lets it stretch
    # the downscaled picture (issue 17) instead of stretching every frame at full size first.
    to_limited = np.round(16 + np.arange(256) * 219 / 255).astype(np.uint8)
    config = MotionConfig()
    full, limited = MotionDetector(config), MotionDetector(config)
    full_scores, limited_scores = [], []
    for _t, frame, _visible in walk():
        luma = cv2.LUT(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), to_limited)
        full_scores.append(full.score(cv2.LUT(luma, _LIMITED_TO_FULL)))
        limited_scores.append(limited.score(luma, limited_range=True))
    assert max(full_scores) >= config.min_area
    assert np.allclose(full_scores, limited_scores, atol=0.002), (full_scores, limited_scores)


def test_idle_fast_path_gives_what_the_general_path_gives() -> None:
    # A frame the background explains entirely takes a short path (issue 17); it must leave the
    # detector exactly where the general path would: same scores, same background, same counters.
    # The walk pauses (still pixels count towards absorption) and has quiet frames between.
    config = MotionConfig(still_absorb_s=1.0)
    fast, general = MotionDetector(config), MotionDetector(config)
    general.idle_fast_path = False
    frames = [f for _t, f, _v in walk(pause=12, quiet_before=5, quiet_after=10)]
    frames += [f for _t, f, _v in walk(pause=3, quiet_before=5, quiet_after=10, seed=8)]
    idle = 0
    for frame in frames:
        assert fast.score(frame) == general.score(frame)
        assert fast._background is not None and general._background is not None
        assert np.array_equal(fast._background, general._background)
        assert np.array_equal(fast._still, general._still)
        idle += int(cv2.countNonZero(fast._explained) == fast._explained.size)
    assert idle > 10  # the short path was taken


def test_a_long_still_absorb_counts_past_255_frames() -> None:
    # still_absorb_s * analysis_fps >= 255 takes the uint16 counter (the default, 15, a uint8 one):
    # an object that arrives and stays is learnt after exactly that many analysed frames. A slow
    # background (alpha 0.01) so that it does not fade in on its own first (~220 frames at 0.05).
    config = MotionConfig(still_absorb_s=60.0, background_alpha=0.01)  # 300 frames at 5 fps
    absorb_after = 300
    detector = MotionDetector(config)
    rng = np.random.default_rng(5)
    bg = background(5)
    for _ in range(5):
        detector.score(render(bg, rng))
    scores = [detector.score(render(bg, rng, (300, 100, 90, 200))) for _ in range(absorb_after + 5)]
    assert detector._still is not None and detector._still.dtype == np.uint16
    assert min(scores[:absorb_after]) >= config.min_area
    assert max(scores[absorb_after:]) < config.min_area
