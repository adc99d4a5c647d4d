"""The `ltaug` command (argparse); thin wrappers around the ltaug and trainer packages."""
