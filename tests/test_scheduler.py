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
    assert abs(out["budgets"][-1] - 0.9 * PERIOD) < 1e-6   # MAX_FRAME_SHARE of a 60 Hz frame
    assert all(b2 >= b1 - 1e-9 for b1, b2 in zip(out["budgets"], out["budgets"][1:]))


def test_missed_frame_cuts_the_budget_which_then_regrows(browser):
    frames = [PERIOD] * 100 + [2 * PERIOD] + [PERIOD] * 4 + [PERIOD] * 100
    out = browser.page.evaluate(ADAPT, frames)
    before, after = out["budgets"][99], out["budgets"][100]
    assert out["late"] == 1
    assert abs(after - 0.85 * before) < 1e-6   # a gentle cut: most late frames here come from CPU contention
    assert abs(out["budgets"][104] - (after + 4 * 0.25)) < 1e-6   # back on time: +0.25 ms a frame
    assert abs(out["budgets"][-1] - 0.9 * PERIOD) < 1e-6


LEARN = """async () => {
  const { Scheduler } = await import('/runtime/scheduler.js');
  const s = new Scheduler(null, { timer: null }, {});
  let truth = { a: 2e6, b: 1e5 };   // FLOP per ms; pass b is 20x slower per FLOP, like a copy among convs
  const slice = (keys) => keys.map((key) => ({ key, cost: 1e6, ms: 1e6 / s.rateOf(key) }));
  const gpuMs = (groups) => groups.reduce((t, g) => t + g.cost / truth[g.key], 0);
  const errors = () => { const g = slice(['a', 'b']); return gpuMs(g) / g.reduce((t, x) => t + x.ms, 0); };
  const out = { before: errors() };
  for (const key of ['a', 'b']) { const g = slice([key]); s.learn(g, gpuMs(g)); }   // each new pass timed alone
  out.alone = { a: s.rateOf('a'), b: s.rateOf('b'), samples: [s.passSamples.get('a'), s.passSamples.get('b')] };
  truth = { a: 1e6, b: 5e4 };       // then everything slows down by half (CPU contention on a software GPU)
  out.slowed = errors();
  for (let i = 0; i < 30; i++) { const g = slice(['a', 'b']); s.learn(g, gpuMs(g)); }   // whole slices timed
  out.relearned = errors();
  out.samples = [s.passSamples.get('a'), s.passSamples.get('b')];
  return out;
}"""


def test_pass_speeds_are_learned_alone_then_corrected_by_whole_slices(browser):
    out = browser.page.evaluate(LEARN)
    assert out["before"] > 2   # the shared first guess is far off for the slow pass
    # timed alone, a new pass's speed is exact after one sample
    assert abs(out["alone"]["a"] / 2e6 - 1) < 1e-9 and abs(out["alone"]["b"] / 1e5 - 1) < 1e-9
    assert out["alone"]["samples"] == [1, 1]
    assert abs(out["slowed"] - 2) < 1e-9
    # a whole slice's time corrects the passes in it: the slice estimate converges on the GPU's time
    assert abs(out["relearned"] - 1) < 0.01
    assert out["samples"] == [1, 1]   # slices of several passes do not count as a pass timed alone
