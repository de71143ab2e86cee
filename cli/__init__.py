"""The admin CLI (`mutualmesh`): thin click commands over the core, provisioning and the bus."""
