package smtpd

const childEnv = "SMTPD_TEST_CHILD"

func runChild() {}
