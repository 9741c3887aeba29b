"""`kfloop up | down | status`: the whole local system (collector, feature follower, joiner, serving stack, ...)
under one supervisor and one state directory, each part started as its own `kfloop` process."""
