/// Guest image building lives here.
public enum IsolabImages {}
