"""Large collection: hundreds of thousands of episodes for real training runs (a many-core host).

`twjax collect --config configs/data/large.py --out data/large --config.workers=64`
"""
import ml_collections


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.families = ()
    c.held_out_families = ("text_grep",)
    c.episodes = ml_collections.ConfigDict(dict(train=30000, valid=1000, test=1000))
    c.kinds = ml_collections.ConfigDict(dict(expert=0.35, injected=0.45, exploration=0.2))
    c.difficulty = (1, 5)
    c.heldout_task_fraction = 0.25
    c.exploration_steps = 10
    c.max_candidates_factor = 40
    # Tasks from `twjax tasks import` (Harbor / Terminal-Bench): benchmarks, so test-only by default.
    c.imported = ml_collections.ConfigDict(dict(files=(), split="test", kinds=("expert",)))
    c.observe_setup = False  # see configs/data/tiny.py
    c.observe_layout = "contents_first"  # see configs/data/tiny.py
    c.seed = 2
    c.backend = "auto"
    c.workers = 32
    c.shard_size = 20000
    return c
