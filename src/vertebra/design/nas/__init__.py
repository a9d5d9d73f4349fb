"""Neural architecture search: search spaces as data (the NAS paper's layers, MnasNet's blocks, a
set of registered models); strategies (the NAS paper's LSTM controller trained with REINFORCE, Zoph
& Le 2017, arXiv:1611.01578; random search; regularized evolution, Real et al. 2019; successive
halving over a constructed set); objectives (the paper's accuracy, MnasNet's latency-aware reward); trials in this
process, on local workers or on Ray; journals and state that survive a kill; and the final grid
search and training of the best child."""
from .controller import Controller, ControllerSettings
from .executors import EXECUTORS, register_executor
from .final import FinalResult, Grid, final_stage
from .journal import Journal
from .objectives import AccuracyObjective, MnasObjective, pareto_front, scored
from .search import DepthSchedule, SearchConfig, SearchResult, search
from .space import (SPACES, Anchor, Choice, MnasBlocksSpace, ModelsSpace, NasCnnSpace, SearchSpace, get_space,
                    register_space)
from .strategies import (STRATEGIES, EvolutionSettings, EvolutionStrategy, MorphSettings, MorphStrategy, Proposal,
                         RandomStrategy,
                         ReinforceStrategy, SetSettings, SuccessiveHalvingStrategy, make_strategy, register_strategy)
from .trial import TrialSettings, run_trial

__all__ = ["EXECUTORS", "SPACES", "STRATEGIES", "AccuracyObjective", "Anchor", "Choice", "Controller",
           "ControllerSettings", "DepthSchedule", "EvolutionSettings", "EvolutionStrategy", "FinalResult", "Grid",
           "Journal", "MnasBlocksSpace", "MnasObjective", "ModelsSpace", "MorphSettings", "MorphStrategy",
           "NasCnnSpace", "Proposal", "RandomStrategy",
           "ReinforceStrategy", "SearchConfig", "SearchResult", "SearchSpace", "SetSettings",
           "SuccessiveHalvingStrategy", "TrialSettings", "final_stage",
           "get_space", "make_strategy", "pareto_front", "register_executor", "register_space", "register_strategy",
           "run_trial", "scored", "search"]
