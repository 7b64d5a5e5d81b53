package outbox

// ValidateAppID checks an account id (a Svix application uid) against the
// outbox's app_id rules: 1 to 256 characters of A-Z a-z 0-9 - _ ., not
// starting with app_, ep_ or msg_. A refusal is a *ValidationError.
func ValidateAppID(appID string) error {
	if err := validateAppID(appID); err != nil {
		return err
	}
	return nil
}
