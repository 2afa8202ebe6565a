"""Interactive imitation: DAgger, HG-DAgger and DART against scripted oracles or SB3 experts.

`experts` (who labels), `gates` (HG-DAgger's takeovers), `dart` (noise fitted to the
learner's error), `episodes` (one interactive episode, any driver), `dagger` (the rounds).
"""
