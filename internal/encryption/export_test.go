package encryption

// CheckStatus is checkStatus, for tests.
var CheckStatus = checkStatus
