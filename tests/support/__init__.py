"""What the tests share: one of each, imported wherever a test needs it.

* :mod:`tests.support.fakes`: an in-memory store and a publisher, for the batch processor
  and the decay sweep without Redis or Kafka;
* :mod:`tests.support.fold`: the offline reference, events folded through the pure scoring
  core as one clean pass of the worker would;
* :mod:`tests.support.diff`: what differs between two customer states;
* :mod:`tests.support.kafka`: producing with known offsets and reading topics back.
"""
