"""fashionclf: build, measure and serve a clothing classifier on Fashion-MNIST."""

__version__ = "0.1.0"
