"""The balance stage: honest splits, resampling with the paper's augmentations, class weights, HF-compatible Parquet
shards and a dataset card, written to `<workspace>/dataset/`.

    from fusekit.balance import BalanceConfig, run_balance, status_lines
"""

from fusekit.balance.card import summary_lines
from fusekit.balance.config import BalanceConfig, parse_augment, parse_split
from fusekit.balance.stage import BalanceReport, run_balance, status_lines

__all__ = ["BalanceConfig", "BalanceReport", "run_balance", "status_lines", "summary_lines", "parse_split",
           "parse_augment"]
