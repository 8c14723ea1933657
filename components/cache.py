"""window_cache_key: what lets extract be served from the cache only for windows that are closed."""

from kfp import dsl

from searchrec import config


@dsl.component(base_image=config.image("clean"), install_kfp_package=False)
def window_cache_key(
    end_date: str,
    run_id: str,
    cache_lag_days: int = 2,  # config.CACHE_LAG_DAYS
    run_name: str = "",
) -> str:
    """`closed:<end_date>` when `end_date` is at least `cache_lag_days` days before today (UTC), else
    `open:<run_name or run_id>`. Extract tasks take it as `cache_token`: a closed window's extract repeats its cache key
    and is reused; an open one's never is. This task itself is never cached."""
    from searchrec.caching import window_cache_key as key
    from searchrec.runtime import stage

    with stage("window_cache_key"):
        return key(end_date, int(cache_lag_days), run_name or run_id)
