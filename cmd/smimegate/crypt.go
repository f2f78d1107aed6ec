package main

import "errors"

// runEncrypt is being written; this placeholder keeps the package building meanwhile.
func runEncrypt(args []string) error { return errors.New("not built yet") }

// runDecrypt is being written; this placeholder keeps the package building meanwhile.
func runDecrypt(args []string) error { return errors.New("not built yet") }
