"""The frame-budget controller (runtime/scheduler.js), driven with synthetic frame timestamps in the real page."""

ADAPT = """async (frames) => {
  const { Scheduler } = await import('/runtime/scheduler.js');
  const s = new Scheduler(null, { timer: null }, { budgetMs: 4 });
  const budgets = [];
  let ts = 0;
  for (const dt of frames) { ts += dt; s.adapt(ts); budgets.push(s.budgetMs); }
  return { budgets, late: s.counters.lateFrames };
}"""

PERIOD = 1000 / 60


def test_budget_grows_to_its_share_of_the_frame(browser):
    out = browser.page.evaluate(ADAPT, [PERIOD] * 200)
    assert out["late"] == 0
    assert abs(out["budgets"][-1] - 0.8 * PERIOD) < 1e-6   # MAX_FRAME_SHARE of a 60 Hz frame
    assert all(b2 >= b1 - 1e-9 for b1, b2 in zip(out["budgets"], out["budgets"][1:]))


def test_missed_frame_cuts_the_budget_which_then_regrows(browser):
    frames = [PERIOD] * 100 + [2 * PERIOD] + [PERIOD] * 4 + [PERIOD] * 100
    out = browser.page.evaluate(ADAPT, frames)
    before, after = out["budgets"][99], out["budgets"][100]
    assert out["late"] == 1
    assert abs(after - 0.85 * before) < 1e-6   # a gentle cut: most late frames here come from CPU contention
    assert abs(out["budgets"][104] - (after + 4 * 0.25)) < 1e-6   # back on time: +0.25 ms a frame
    assert abs(out["budgets"][-1] - 0.8 * PERIOD) < 1e-6
