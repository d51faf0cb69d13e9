"""VADER-Python baseline for the sentiment bench: texts/s of vaderSentiment on the same file.

Usage: python3 benches/vader_python.py ../shared/data/sentiment/val.tsv [passes]
"""
import statistics
import sys
import time

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer


def main() -> None:
    path = sys.argv[1]
    passes = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with open(path, encoding="utf-8") as handle:
        texts = [line.split("\t", 1)[1].rstrip("\n") for line in list(handle)[1:] if "\t" in line]
    analyzer = SentimentIntensityAnalyzer()
    rates = []
    for _ in range(passes):
        started = time.perf_counter()
        for text in texts:
            analyzer.polarity_scores(text)
        rates.append(len(texts) / (time.perf_counter() - started))
    print(f"vader-python texts/s median {statistics.median(rates):.0f} over {passes} passes of {len(texts)} texts")


if __name__ == "__main__":
    main()
