"""The field's language-model unlearning measures: TOFU's, MUSE's and the membership attacks'."""
