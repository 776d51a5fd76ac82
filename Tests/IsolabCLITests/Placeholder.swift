import XCTest

final class IsolabCLITestsPlaceholder: XCTestCase {
    func testPlaceholder() {}
}
