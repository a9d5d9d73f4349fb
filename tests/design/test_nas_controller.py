"""The controller, REINFORCE, random search and the depth schedule: no child is trained here."""
import pytest
import torch

from vertebra.design.nas import (Anchor, Choice, Controller, ControllerSettings, DepthSchedule, EvolutionSettings,
                                 EvolutionStrategy, Journal, RandomStrategy, ReinforceStrategy, SetSettings,
                                 SuccessiveHalvingStrategy, get_space)


def records(*rewards):
    """Scored trial records, as the search hands them to a strategy."""
    return [{"trial": i, "reward": r} for i, r in enumerate(rewards)]


@pytest.fixture
def space():
    return get_space("nas_cnn")


def test_samples_are_valid_and_reproducible(space):
    controller = Controller(space.decisions())
    decisions = space.decisions(5)
    first, _, _ = controller.run(decisions, torch.Generator().manual_seed(3))
    again, _, _ = controller.run(decisions, torch.Generator().manual_seed(3))
    assert first == again
    for decision, value in zip(decisions, first):
        if isinstance(decision, Choice):
            assert value in decision.options
        else:
            assert all(0 <= j < decision.layer for j in value) and value == sorted(value)
    genotype = space.genotype(first, 5)
    assert space.values(genotype) == first


def test_scoring_gives_the_sampling_probability(space):
    """REINFORCE re-scores recorded choices: the log-probability must be the one they were drawn with."""
    controller = Controller(space.decisions())
    decisions = space.decisions(4)
    values, log_prob, _ = controller.run(decisions, torch.Generator().manual_seed(0))
    _, rescored, _ = controller.run(decisions, values=values)
    assert torch.allclose(log_prob, rescored)
    # and it is a real log-probability: each first-step choice's probabilities sum to one
    h, _ = controller.step(controller.start, [(torch.zeros(1, 35), torch.zeros(1, 35))] * 2)
    kind = decisions[0].name.split(".", 1)[1]
    assert torch.softmax(controller.heads[kind](h), -1).sum().item() == pytest.approx(1.0)


def test_anchor_attention_is_the_papers_formula(space):
    controller = Controller(space.decisions())
    anchors = [torch.randn(1, 35) for _ in range(3)]
    current = torch.randn(1, 35)
    logits = controller.connection_logits(anchors, current)
    w_prev, w_curr, v = controller.attend_prev.weight, controller.attend_curr.weight, controller.attend_v.weight
    expected = [(v @ torch.tanh(w_prev @ h_j[0] + w_curr @ current[0])).item() for h_j in anchors]
    assert logits.tolist() == pytest.approx(expected, rel=1e-5)


def test_paper_defaults():
    settings = ControllerSettings()
    assert (settings.num_layers, settings.hidden_size, settings.lr) == (2, 35, 6e-4)
    schedule = DepthSchedule()
    assert [schedule.depth(t) for t in (0, 1599, 1600, 3200, 12800, 20000)] == [6, 6, 8, 10, 22, 22]
    small = DepthSchedule.for_budget(64)
    assert [small.depth(t) for t in (0, 15, 16, 32, 48, 63)] == [6, 6, 8, 10, 12, 12]


def test_reinforce_moves_probability_toward_the_rewarded_child(space):
    strategy = ReinforceStrategy(space, seed=0, settings=ControllerSettings(lr=0.05))
    good, bad = strategy.propose(0, 2, 3)
    decisions = space.decisions(3)

    def log_prob(p):
        return strategy.controller.run(decisions, values=p.values)[1].item()

    before = log_prob(good) - log_prob(bad)
    strategy.baseline = 0.5
    strategy.update([good, bad], records(1.0, 0.0))
    assert log_prob(good) - log_prob(bad) > before
    assert strategy.baseline == pytest.approx(0.95 ** 2 * 0.5 + 0.05 * 0.95 * 1.0)


def test_the_controller_learns_a_toy_reward():
    """Reward = share of 3x3 filters: after some updates the controller writes more of them."""
    space = get_space("nas_cnn", strides=None)
    strategy = ReinforceStrategy(space, seed=1, settings=ControllerSettings(lr=0.05))

    def reward(p):
        heights = [layer["filter_height"] for layer in p.genotype["layers"]]
        return sum(h == 3 for h in heights) / len(heights)

    means = []
    for step in range(20):
        batch = strategy.propose(4 * step, 4, 2)
        rewards = [reward(p) for p in batch]
        strategy.update(batch, records(*rewards))
        means.append(sum(rewards) / len(rewards))
    assert sum(means[-5:]) / 5 > sum(means[:5]) / 5 + 0.2


@pytest.mark.parametrize("make", [lambda s: ReinforceStrategy(s, seed=5), lambda s: RandomStrategy(s, seed=5),
                                  lambda s: EvolutionStrategy(s, seed=5, settings=EvolutionSettings(2, 2)),
                                  lambda s: SuccessiveHalvingStrategy(s, seed=5, settings=SetSettings(size=6))])
def test_strategy_state_round_trip_gives_the_same_future(space, make):
    strategy = make(space)
    strategy.update(strategy.propose(0, 2, 3), records(0.3, 0.6))
    tensors, saved = strategy.state()
    expected = [p.genotype for p in strategy.propose(2, 3, 4)]
    fresh = make(space)
    fresh.load_state(tensors, saved)
    assert [p.genotype for p in fresh.propose(2, 3, 4)] == expected


def test_random_search_is_uniform_over_options(space):
    strategy = RandomStrategy(space, seed=0)
    heights = [layer["filter_height"] for p in strategy.propose(0, 200, 3) for layer in p.genotype["layers"]]
    assert set(heights) == {1, 3, 5, 7}
    assert all(100 < heights.count(h) < 200 for h in (1, 3, 5, 7))  # 600 draws, 150 expected each


def test_journal_drops_and_trims_a_torn_last_line(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append({"trial": 0, "reward": 0.5})
    with journal.path.open("a") as handle:
        handle.write('{"trial": 1, "rew')  # a kill in the middle of a write
    assert journal.read() == [{"trial": 0, "reward": 0.5}]
    journal.trim()
    journal.append({"trial": 1, "reward": 0.25})
    assert journal.read() == [{"trial": 0, "reward": 0.5}, {"trial": 1, "reward": 0.25}]


def test_bad_settings_are_clear_errors(tmp_path):
    from vertebra.design.nas import SearchConfig, search
    from vertebra.design.nas.strategies import make_strategy

    with pytest.raises(ValueError, match="unknown strategy 'annealing'; the strategies are rl, random, evolution, set"):
        make_strategy("annealing", get_space("nas_cnn"), 0)
    with pytest.raises(ValueError, match="trials must be a positive integer, got 0"):
        search(SearchConfig("rl", trials=0, out=tmp_path / "a"))
    with pytest.raises(ValueError, match="executor must be one of inline, local, ray, got 'slurm'"):
        search(SearchConfig("rl", trials=2, executor="slurm", out=tmp_path / "b"))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="nothing to resume .* notes.txt, which are not a search's"):
        search(SearchConfig("rl", trials=2, resume=True, out=tmp_path / "c"))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mine.txt").write_text("keep")
    with pytest.raises(ValueError, match="already holds a search"):
        search(SearchConfig("rl", trials=2, out=tmp_path / "d"))
    assert (tmp_path / "d" / "mine.txt").read_text() == "keep"
    assert not (tmp_path / "b").exists()  # a refused search leaves nothing behind


def test_a_search_over_connections_only_samples_and_scores():
    """Every layer's shape fixed: layer 0 makes no decision, yet later layers attend to it."""
    space = get_space("nas_cnn", filter_heights=(3,), filter_widths=(3,), filters=(24,), strides=None)
    controller = Controller(space.decisions())
    decisions = space.decisions(4)
    assert all(isinstance(d, Anchor) for d in decisions) and decisions[0].layer == 1
    values, log_prob, _ = controller.run(decisions, torch.Generator().manual_seed(0))
    assert torch.allclose(controller.run(decisions, values=values)[1], log_prob)
    assert len(space.genotype(values, 4)["layers"]) == 4


def test_the_papers_three_strides_build_and_run():
    import vertebra

    space = get_space("nas_cnn", strides=(1, 2, 3))
    strategy = ReinforceStrategy(space, seed=0)
    for proposal in strategy.propose(0, 6, 4):
        model = vertebra.create_model("nas_child", genotype=proposal.genotype, num_classes=10, small_input=True)
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert {layer["stride"] for p in RandomStrategy(space, seed=0).propose(0, 30, 4) for layer in
            p.genotype["layers"]} == {1, 2, 3}


def three_by_three_share(proposal):
    heights = [layer["filter_height"] for layer in proposal.genotype["layers"]]
    return sum(h == 3 for h in heights) / len(heights)


def test_evolution_tournament_mutation_crossover_and_aging(space):
    strategy = EvolutionStrategy(space, seed=0, settings=EvolutionSettings(population=4, sample=4, crossover=0.0))
    seeds = strategy.propose(0, 4, 3)  # the first P are random
    strategy.update(seeds, records(0.1, 0.9, 0.2, 0.3))
    best = seeds[1]
    for trial in range(4, 10):  # S = P: the tournament always picks the best; one decision differs
        child = strategy.propose(trial, 1, 3)[0]
        changed = [i for i, (a, b) in enumerate(zip(child.values, best.values)) if a != b]
        assert len(changed) == 1, changed
    strategy.update(strategy.propose(10, 1, 3), records(0.0))
    assert [m["trial"] for m in strategy.population] == [1, 2, 3, 10]  # the oldest left
    crossing = EvolutionStrategy(space, seed=1, settings=EvolutionSettings(population=2, sample=1, crossover=1.0))
    parents = crossing.propose(0, 2, 3)
    crossing.update(parents, records(0.5, 0.5))
    for child in crossing.propose(2, 20, 3):  # uniform crossover of the two, then one mutation
        from_neither = [i for i, v in enumerate(child.values) if v not in (parents[0].values[i], parents[1].values[i])]
        assert len(from_neither) <= 1


def test_evolution_learns_a_toy_reward():
    space = get_space("nas_cnn", strides=None)
    strategy = EvolutionStrategy(space, seed=2, settings=EvolutionSettings(population=10, sample=3))
    rewards = []
    for trial in range(80):
        child = strategy.propose(trial, 1, 3)[0]
        rewards.append(three_by_three_share(child))
        strategy.update([child], records(rewards[-1]))
    assert sum(rewards[-10:]) / 10 > sum(rewards[:10]) / 10 + 0.3


def test_evolution_settings_and_budget_are_checked(tmp_path):
    from vertebra.design.nas import SearchConfig, search

    for settings, message in ((dict(population=0), "population must be a positive integer"),
                              (dict(population=3, sample=5), "cannot exceed the population"),
                              (dict(crossover=1.5), "crossover must be a rate")):
        with pytest.raises(ValueError, match=message):
            EvolutionSettings(**settings)
    with pytest.raises(ValueError, match="a population of 20 needs more than 8 trials"):
        search(SearchConfig("evolution", trials=8, out=tmp_path / "e"))
    assert not (tmp_path / "e").exists()


def test_successive_halving_keeps_the_better_half_at_twice_the_epochs(space):
    strategy = SuccessiveHalvingStrategy(space, seed=3, settings=SetSettings(size=5))
    assert strategy.rounds(5) == [5, 3, 2, 1] and SuccessiveHalvingStrategy.trials_needed(SetSettings(5), space) == 11
    first = strategy.propose(0, strategy.batch_size(), 3)
    genotypes = [p.genotype for p in first]
    assert len(first) == 5 and all(p.epochs_factor == 1 for p in first)
    assert all(a != b for i, a in enumerate(genotypes) for b in genotypes[i + 1:])  # distinct candidates
    assert strategy.update(first, records(0.2, 0.9, 0.5, 0.9, 0.1)) == {"round": 0, "kept": [1, 2, 3]}
    second = strategy.propose(5, strategy.batch_size(), 3)
    assert [p.genotype for p in second] == [genotypes[1], genotypes[2], genotypes[3]]
    assert all(p.epochs_factor == 2 for p in second)
    strategy.update(second, records(0.5, 0.7, 0.6))  # the longer training decides, not the first round
    third = strategy.propose(8, strategy.batch_size(), 3)
    assert [p.genotype for p in third] == [genotypes[2], genotypes[3]] and third[0].epochs_factor == 4
    strategy.update(third, records(0.8, 0.8))  # a tie: the candidate listed first stays
    last = strategy.propose(10, strategy.batch_size(), 3)
    assert [(p.genotype, p.epochs_factor) for p in last] == [(genotypes[2], 8)]
    strategy.update(last, records(0.9))
    assert strategy.batch_size() == 0  # one candidate left, trained longest: the search is over


def test_set_search_over_models_and_its_budget(tmp_path):
    from vertebra.design.nas import SearchConfig, search

    models = get_space("models", candidates=("mobilenet_v2_0[35]*", "mnasnet0_5"))
    strategy = SuccessiveHalvingStrategy(models, seed=0)
    assert [p.genotype["model"] for p in strategy.propose(0, strategy.batch_size(), None)] == \
        ["mobilenet_v2_035", "mobilenet_v2_050", "mnasnet0_5"]  # every member, in order
    assert SuccessiveHalvingStrategy.trials_needed(SetSettings(), models) == 6
    with pytest.raises(ValueError, match="a set of 4 candidates cannot be drawn from the 3 models"):
        SuccessiveHalvingStrategy.trials_needed(SetSettings(4), models)
    with pytest.raises(ValueError, match="at least 2 candidates"):
        SetSettings(1)
    with pytest.raises(ValueError, match="trains 6 children in all; --trials 8 differs"):
        search(SearchConfig("set", space="models", space_settings={"candidates": ("mobilenet_v2_0[35]*", "mnasnet0_5")},
                            trials=8, out=tmp_path / "s"))
    assert not (tmp_path / "s").exists()
