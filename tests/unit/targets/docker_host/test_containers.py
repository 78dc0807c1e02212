from targets.docker_host.containers import KeptContainer, to_prune


def kept(id_, created, running=False):
    return KeptContainer(id=id_, created=created, running=running)


KEPT = [
    kept("c-old-running", "2024-05-01T08:00:00.000000001Z", running=True),
    kept("c-3", "2024-05-03T10:00:00.5Z"),
    kept("c-1", "2024-05-01T10:00:00.5Z"),
    kept("c-4", "2024-05-04T10:00:00.5Z"),
    kept("c-2", "2024-05-02T10:00:00.5Z"),
]


class TestToPrune:
    def test_prunes_stopped_beyond_the_newest_n(self):
        assert set(to_prune(KEPT, keep=2)) == {"c-1", "c-2"}

    def test_keep_zero_prunes_every_stopped_one_but_no_running_one(self):
        assert set(to_prune(KEPT, keep=0)) == {"c-1", "c-2", "c-3", "c-4"}

    def test_nothing_to_prune_when_fewer_stopped_than_keep(self):
        assert to_prune(KEPT, keep=4) == []

    def test_running_containers_never_pruned_even_when_all_running(self):
        running = [kept("a", "2024-01-01T00:00:00Z", True), kept("b", "2024-01-02T00:00:00Z", True)]

        assert to_prune(running, keep=0) == []
