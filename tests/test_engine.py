from tagger.engine import _length_buckets


def test_length_buckets():
    groups = _length_buckets([100, 2600, 110, 2500, 90, 77000], max_size=2)
    assert sorted(i for g in groups for i in g) == list(range(6))
    for g in groups:
        lens = [[100, 2600, 110, 2500, 90, 77000][i] for i in g]
        assert len(g) <= 2 and max(lens) <= 1.5 * min(lens)
    assert [5] in groups
