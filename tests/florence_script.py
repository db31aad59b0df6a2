"""Scripted Florence-2 answers for tests: a random model emits ``</s>`` at once, so tests force
the tokens they need while confidences still come from the model's real logits."""

from typing import List, Sequence

import torch
from transformers import LogitsProcessor


class ScriptedAnswers(LogitsProcessor):
    """Forces the answers of successive generate rows, in order. Each answer is text such as
    ``"dog<loc_1><loc_2><loc_3><loc_4>"``; like the real model's, it starts with ``<s>`` and ends
    with ``</s>``. With beam search every beam of a row gets its row's answer."""

    def __init__(self, tokenizer, answers: Sequence[str], num_beams: int = 1) -> None:
        self.eos = tokenizer.eos_token_id
        self.queue: List[List[int]] = [
            [tokenizer.bos_token_id] + tokenizer(a, add_special_tokens=False)["input_ids"] + [self.eos]
            for a in answers
        ]
        self.num_beams = num_beams
        self.current: List[List[int]] = []
        self.rows_started = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - 1  # tokens generated so far
        if step == 0:
            rows = input_ids.shape[0] // self.num_beams
            if len(self.queue) < rows:
                raise AssertionError(f"the script has {len(self.queue)} answers left, {rows} rows asked")
            self.current, self.queue = self.queue[:rows], self.queue[rows:]
            self.rows_started += rows
        forced = torch.full_like(scores, float("-inf"))
        for r in range(input_ids.shape[0]):
            answer = self.current[r // self.num_beams]
            forced[r, answer[step] if step < len(answer) else self.eos] = 0.0
        return forced
