"""Small collection: tens of thousands of episodes; enough to train the small terminal model.

`twjax collect --config configs/data/small.py --out data/small`
"""
import ml_collections


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.families = ()
    c.held_out_families = ("text_grep",)
    c.episodes = ml_collections.ConfigDict(dict(train=2000, valid=100, test=100))
    c.kinds = ml_collections.ConfigDict(dict(expert=0.4, injected=0.4, exploration=0.2))
    c.difficulty = (1, 4)
    c.heldout_task_fraction = 0.25
    c.exploration_steps = 8
    c.max_candidates_factor = 40
    # Tasks from `twjax tasks import` (Harbor / Terminal-Bench): benchmarks, so test-only by default.
    c.imported = ml_collections.ConfigDict(dict(files=(), split="test", kinds=("expert",)))
    c.observe_setup = False  # see configs/data/tiny.py
    c.observe_layout = "contents_first"  # see configs/data/tiny.py
    c.seed = 1
    c.backend = "auto"
    c.workers = 8
    c.shard_size = 5000
    return c
