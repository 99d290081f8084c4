"""HTTP only: one blueprint per resource. Parse -> call a service -> render."""
