import unittest

from count import count


class CountTest(unittest.TestCase):
    def test_counts_lines_words_and_characters(self):
        self.assertEqual(count("héllo wörld\nbye"), {"lines": 2, "words": 3, "chars": 15})
        with self.assertRaises(ValueError):
            count("")


if __name__ == "__main__":
    unittest.main()
