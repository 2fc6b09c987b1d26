"""Rules as code: the fact registry, the rule language, the evaluator and the planner.

Import what you need from the submodules: :mod:`smartplexd.rules.facts` (``registry()``),
:mod:`smartplexd.rules.models` (``load_rules``, ``parse_rule``), :mod:`smartplexd.rules.planner`
(``make_plan``, ``preview``, ``load_plan``, ``cancel_leaving_soon_if_played``) and
:mod:`smartplexd.rules.check` (what ``smartplexd check`` prints about rules).
"""
