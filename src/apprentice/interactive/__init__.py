"""Interactive imitation: DAgger, HG-DAgger and DART against scripted oracles, SB3 experts
or a person at a teleop device.

`experts` (who labels), `gates` (HG-DAgger's takeovers), `human` (a person as expert and
gate), `dart` (noise fitted to the learner's error), `episodes` (one interactive episode,
any driver), `dagger` (the rounds).
"""
