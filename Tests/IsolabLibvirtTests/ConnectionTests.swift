import IsolabLibvirt
import XCTest
