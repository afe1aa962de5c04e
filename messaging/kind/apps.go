package kind

// AppPostBody is a mini-app's message into a conversation, posted by the
// server for the app's backend (a notice): the app and its organisation
// are named by the server, which checked the app's credentials and the
// citizen's consent; the text is the app's.
type AppPostBody struct {
	AppID   string `json:"app_id"`
	AppName string `json:"app_name"`
	OrgID   string `json:"org_id"`
	Text    string `json:"text"`
}

func (*AppPostBody) Kind() Kind { return AppPost }
func (b *AppPostBody) Validate() error {
	for _, f := range []struct{ name, v string }{{"app_id", b.AppID}, {"org_id", b.OrgID}} {
		if err := checkID(f.name, f.v); err != nil {
			return invalid(AppPost, "%v", err)
		}
	}
	if err := checkText("app_name", b.AppName, 80, true); err != nil {
		return invalid(AppPost, "%v", err)
	}
	if err := checkText("text", b.Text, 2000, true); err != nil {
		return invalid(AppPost, "%v", err)
	}
	return nil
}
