"""The course's tooling, apart from the mathematics (which never imports it): ``grade`` (the grader), ``bench``
(the benchmark report), ``peer`` (the peer comparison), ``verify`` (the agreement and convergence harness shared
by the tests and the benchmark), ``authoring`` (exercises and stamps), ``memory`` (/proc) and ``cli``."""
