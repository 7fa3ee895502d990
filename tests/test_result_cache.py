"""The result cache (service/inference/result_cache.py): keys, bounds, model versions, opt-out, and
a shared cache on a real redis-server (Debian package `redis-server`, started here)."""

from __future__ import annotations

from types import SimpleNamespace

from service.inference.classifier import ClassifyResult, TaskPrediction
from service.inference.result_cache import (
    CacheUse,
    MemoryResultCache,
    RedisResultCache,
    cache_key,
    cache_use,
    cached_classification,
    classifier_fingerprint,
    decode_result,
    encode_result,
)
from service.launchers.gateway_process import free_port
from service.text.processing import TextStep
from tests.redis_fixtures import redis_url  # noqa: F401  (fixture)


def fake_classifier(version: str, ocr: str = "easyocr") -> SimpleNamespace:
    """What the cache reads of a MemeClassifier: the manifest's version, the OCR name, the text path."""
    return SimpleNamespace(
        manifest=SimpleNamespace(repository_version=version),
        ocr=SimpleNamespace(name=ocr),
        text_processor=None,
    )


def a_result(text: str = "when the code compiles", label: str = "positive") -> ClassifyResult:
    return ClassifyResult(
        text=text,
        text_source="ocr",
        tasks={
            "sentiment": TaskPrediction("sentiment", 2, label, "POS", {"negative": 0.1, "neutral": 0.2, label: 0.7})
        },
        task_b={"humorous": True},
        votes={"clip_text": {"sentiment": label}},
        timings_ms={"total": 12.0},
        language="en",
        text_steps=[TextStep("input", text), TextStep("clean", text, {"removed": ["@user"]})],
    )


class Counting:
    def __init__(self, result: ClassifyResult) -> None:
        self.result = result
        self.calls = 0

    def __call__(self) -> ClassifyResult:
        self.calls += 1
        return self.result


def test_key_covers_image_text_and_fingerprint() -> None:
    fp = classifier_fingerprint(fake_classifier("v1"))
    base = cache_key(b"img", None, fp)
    assert base == cache_key(b"img", None, fp)
    assert len({base, cache_key(b"img2", None, fp), cache_key(b"img", "", fp), cache_key(b"img", "t", fp)}) == 4
    assert cache_key(None, "t", fp) != cache_key(b"", "t", fp)
    assert base != cache_key(b"img", None, classifier_fingerprint(fake_classifier("v2")))
    assert base != cache_key(b"img", None, classifier_fingerprint(fake_classifier("v1", ocr="none")))


def test_values_round_trip_without_timings_and_only_for_their_version() -> None:
    result = a_result()
    value = encode_result(result, "v1")
    back = decode_result(value, "v1")
    assert back is not None
    assert back.timings_ms == {}
    back.timings_ms = result.timings_ms
    assert back == result
    assert decode_result(value, "v2") is None
    assert decode_result(b"not json", "v1") is None


def test_memory_cache_is_bounded_in_entries_and_bytes() -> None:
    cache = MemoryResultCache(max_entries=3, max_bytes=10_000)
    for i in range(5):
        cache.put(f"k{i}", b"x" * 100)
    assert len(cache) == 3 and cache.get("k0") is None and cache.get("k4") is not None
    cache.get("k2")  # used: k3 is now the oldest
    cache.put("k5", b"y")
    assert cache.get("k3") is None and cache.get("k2") is not None
    small = MemoryResultCache(max_entries=100, max_bytes=1000)
    for i in range(20):
        small.put(f"k{i:02d}", b"z" * 200)
    assert small.size_bytes <= 1000 and len(small) == 4
    small.put("huge", b"z" * 5000)  # larger than the whole cache: not stored, nothing evicted
    assert small.get("huge") is None and len(small) == 4


def test_cache_control_opt_out() -> None:
    assert cache_use(None) == CacheUse(True, True)
    assert cache_use("no-cache") == CacheUse(read=False, write=True)
    assert cache_use("max-age=0, No-Store") == CacheUse(read=False, write=False)


def test_a_new_model_version_never_gets_the_old_answer() -> None:
    cache = MemoryResultCache(100, 1 << 20)
    seen: list[str] = []
    old = Counting(a_result(label="positive"))
    result, hit = cached_classification(cache, CacheUse(), fake_classifier("v1"), b"img", None, old, seen.append)
    assert not hit and old.calls == 1
    result, hit = cached_classification(cache, CacheUse(), fake_classifier("v1"), b"img", None, old, seen.append)
    assert hit and old.calls == 1 and result.tasks["sentiment"].label == "positive"
    new = Counting(a_result(label="negative"))
    result, hit = cached_classification(cache, CacheUse(), fake_classifier("v2"), b"img", None, new, seen.append)
    assert not hit and new.calls == 1 and result.tasks["sentiment"].label == "negative"
    # even an entry stored under the new key by the old version is not served to the new one
    forged_key = cache_key(b"img2", None, classifier_fingerprint(fake_classifier("v2")))
    cache.put(forged_key, encode_result(a_result(label="positive"), "v1"))
    result, hit = cached_classification(cache, CacheUse(), fake_classifier("v2"), b"img2", None, new, seen.append)
    assert not hit and result.tasks["sentiment"].label == "negative"
    assert seen == ["miss", "hit", "miss", "miss"]


def test_no_cache_reclassifies_and_no_store_leaves_nothing() -> None:
    cache = MemoryResultCache(100, 1 << 20)
    work = Counting(a_result())
    seen: list[str] = []
    cached_classification(cache, CacheUse(read=False), fake_classifier("v1"), b"a", "t", work, seen.append)
    cached_classification(cache, CacheUse(read=False), fake_classifier("v1"), b"a", "t", work, seen.append)
    assert work.calls == 2 and seen == ["bypass", "bypass"]
    assert cached_classification(cache, CacheUse(), fake_classifier("v1"), b"a", "t", work)[1]
    cached_classification(cache, CacheUse(False, False), fake_classifier("v1"), b"b", "t", work)
    assert not cached_classification(cache, CacheUse(), fake_classifier("v1"), b"b", "t", work)[1]


def test_replicas_share_the_redis_cache_by_model_version(redis_url: str) -> None:  # noqa: F811
    replica_a = RedisResultCache(redis_url, ttl_s=60, max_bytes=1 << 20)
    replica_b = RedisResultCache(redis_url, ttl_s=60, max_bytes=1 << 20)
    first = Counting(a_result(label="positive"))
    cached_classification(replica_a, CacheUse(), fake_classifier("v1"), b"meme", None, first)
    result, hit = cached_classification(replica_b, CacheUse(), fake_classifier("v1"), b"meme", None, first)
    assert hit and first.calls == 1 and result.text == "when the code compiles"
    upgraded = Counting(a_result(label="negative"))
    result, hit = cached_classification(replica_b, CacheUse(), fake_classifier("v2"), b"meme", None, upgraded)
    assert not hit and result.tasks["sentiment"].label == "negative"
    replica_a.close()
    replica_b.close()


def test_redis_down_is_a_miss_not_an_error() -> None:
    cache = RedisResultCache(f"redis://127.0.0.1:{free_port()}/0", ttl_s=60, max_bytes=1 << 20, timeout_s=0.2)
    work = Counting(a_result())
    result, hit = cached_classification(cache, CacheUse(), fake_classifier("v1"), b"m", None, work)
    assert not hit and work.calls == 1 and result.text == "when the code compiles"
    cache.close()


def test_identical_requests_in_flight_classify_once() -> None:
    import threading

    cache = MemoryResultCache(100, 1 << 20)
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow() -> ClassifyResult:
        calls.append(1)
        started.set()
        assert release.wait(30)
        return a_result()

    answers: list = []
    waiting = threading.Event()
    wait = cache.flights.wait

    def waiting_wait(flight):
        waiting.set()
        return wait(flight)

    cache.flights.wait = waiting_wait  # type: ignore[method-assign]
    leader = threading.Thread(
        target=lambda: answers.append(
            cached_classification(cache, CacheUse(), fake_classifier("v1"), b"same", None, slow)
        )
    )
    leader.start()
    assert started.wait(30)
    follower = threading.Thread(
        target=lambda: answers.append(
            cached_classification(cache, CacheUse(), fake_classifier("v1"), b"same", None, slow)
        )
    )
    follower.start()
    assert waiting.wait(30)  # the follower waits for the leader's answer (not in the cache yet)
    release.set()
    leader.join(30)
    follower.join(30)
    assert len(calls) == 1
    assert sorted(hit for _, hit in answers) == [False, True]
    assert all(result.text == "when the code compiles" for result, _ in answers)


def test_a_failed_leader_leaves_the_followers_to_classify_themselves() -> None:
    cache = MemoryResultCache(100, 1 << 20)
    key = cache_key(b"x", None, classifier_fingerprint(fake_classifier("v1")))
    flight, leader = cache.flights.join(key)
    assert leader
    cache.flights.land(key, flight, None)  # the leader failed
    assert cache.flights.wait(flight) is None
    work = Counting(a_result())
    assert not cached_classification(cache, CacheUse(), fake_classifier("v1"), b"x", None, work)[1]
    assert work.calls == 1
