"""Entity decider (pure logic); see logic.py."""
