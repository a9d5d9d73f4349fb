"""Neural architecture search (Zoph & Le 2017, arXiv:1611.01578): search spaces as data, an LSTM
controller trained with REINFORCE (or random search), trials on local workers or Ray, a journal
that survives a kill, and the final grid search and training of the best child."""
from .controller import Controller, ControllerSettings
from .final import FinalResult, Grid, final_stage
from .executors import EXECUTORS, register_executor
from .journal import Journal
from .objectives import AccuracyObjective, MnasObjective, pareto_front, scored
from .search import DepthSchedule, SearchConfig, SearchResult, search
from .space import SPACES, Anchor, Choice, MnasBlocksSpace, NasCnnSpace, SearchSpace, get_space, register_space
from .strategies import STRATEGIES, EvolutionSettings, EvolutionStrategy, Proposal, RandomStrategy, ReinforceStrategy, make_strategy, register_strategy
from .trial import TrialSettings, run_trial

__all__ = ["EXECUTORS", "STRATEGIES", "AccuracyObjective", "MnasObjective", "pareto_front", "EvolutionSettings", "EvolutionStrategy", "register_executor", "register_space",
           "register_strategy", "scored", "SPACES", "Anchor", "Choice", "Controller", "ControllerSettings", "DepthSchedule", "FinalResult", "Grid",
           "Journal", "MnasBlocksSpace", "NasCnnSpace", "Proposal", "RandomStrategy", "ReinforceStrategy",
           "SearchConfig", "SearchResult", "SearchSpace", "TrialSettings", "final_stage", "get_space",
           "make_strategy", "run_trial", "search"]
